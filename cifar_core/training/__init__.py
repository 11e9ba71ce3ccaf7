"""Training: configuration, the one ``train()`` (and, for a cached frozen part, the loop on
features it runs), the one ``evaluate()``. One run end to end is ``cifar_core.pipeline``."""

from cifar_core.training.config import PROFILES, TrainConfig, make_config

__all__ = ["PROFILES", "TrainConfig", "make_config"]
