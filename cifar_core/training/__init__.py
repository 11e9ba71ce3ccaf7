"""Training: configuration, the one ``train()``, the one ``evaluate()``, and the run pipeline."""

from cifar_core.training.config import PROFILES, TrainConfig, make_config

__all__ = ["PROFILES", "TrainConfig", "make_config"]
