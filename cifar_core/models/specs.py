"""The report's seven models as declarative specs: each one is the previous plus one change.

Read this file top to bottom to see the whole progression; ``dataclasses.replace`` makes every
step a one-line diff. ``cifar_core.models.builder.build_model`` turns a spec into Keras.
The report's published results (CIFAR-100, its Figure 2) sit next to the specs they belong
to, labelled as the report's: they are reference markers, never our measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from cifar_core.errors import ConfigError

Stem = Literal["conv", "mobilenet"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything that distinguishes one model of the progression from another."""

    number: int
    title: str
    change: str  # what this model adds to the previous one (the report's Table 1)
    stem: Stem = "conv"  # "conv": one small Conv2D + MaxPool; "mobilenet": ImageNet backbone
    conv_filters: int = 10
    conv_kernel: int = 2
    hidden_units: tuple[int, ...] = ()  # hidden Dense layers (ReLU) between stem and output
    dropout: float = 0.0  # Dropout after each hidden layer (0 = none)
    augment_flips: bool = False  # random horizontal + vertical flips, training only
    backbone: str = "mobilenet_v1"  # used when stem == "mobilenet"
    backbone_alpha: float = 1.0
    freeze_backbone: bool = False  # False: fine-tune all of it, as the report did
    input_size: int = 32  # resolution fed to the backbone (the report: 32, no resizing)
    learning_rate: float = 1e-3  # Adam, the Keras default
    optimizer: str = "adam"
    hyperparameter_search: bool = False  # model 7: head/training values chosen by search

    def to_dict(self) -> dict:
        data = asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        return data


MODEL_1 = ModelSpec(
    number=1, title="Simple CNN",
    change="Conv2D (10 filters, kernel 2, ReLU), MaxPooling, no hidden dense layer",
)
MODEL_2 = replace(MODEL_1, number=2, title="+ hidden layer 128",
                  change="a hidden Dense layer of 128 units, ReLU", hidden_units=(128,))
MODEL_3 = replace(MODEL_2, number=3, title="+ hidden layer 64",
                  change="a second hidden Dense layer of 64 units, ReLU",
                  hidden_units=(128, 64))
MODEL_4 = replace(MODEL_3, number=4, title="+ dropout 0.2",
                  change="Dropout 0.2 after each hidden layer", dropout=0.2)
MODEL_5 = replace(MODEL_4, number=5, title="+ flip augmentation",
                  change="random horizontal and vertical flips before the network",
                  augment_flips=True)
# Fine-tuning a pretrained base needs a smaller step than a head trained from scratch: at
# Adam's default 1e-3 the base's features are wrecked in the first epoch and the network falls
# to chance (measured on the CIFAR-10 images: 18% validation accuracy after two epochs on 5,000
# images, against 50% at 1e-4 or 3e-4). The step belongs to the transfer-learning change.
MODEL_6 = replace(MODEL_5, number=6, title="+ MobileNet transfer learning",
                  change="MobileNet (alpha 1.0, ImageNet weights, 32x32) fine-tuned in place "
                         "of the small conv stem, at Adam 1e-4", stem="mobilenet",
                  learning_rate=1e-4)
MODEL_7 = replace(MODEL_6, number=7, title="+ hyperparameter search",
                  change="head and training hyperparameters chosen by RandomSearch (3-fold CV) "
                         "then GridSearch", hyperparameter_search=True)

SPECS: dict[int, ModelSpec] = {s.number: s for s in
                               (MODEL_1, MODEL_2, MODEL_3, MODEL_4, MODEL_5, MODEL_6, MODEL_7)}

# The report's own test top-1 on CIFAR-100 (percent). Reference markers only.
REPORT_RESULTS: dict[int, dict[str, float]] = {
    1: {"fine": 18.5, "superclass": 37.7},
    7: {"fine": 59.5, "superclass": 65.6},
}


def get_spec(number: int) -> ModelSpec:
    """The spec of model ``number``; a clear error for unknown numbers."""
    try:
        return SPECS[int(number)]
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"unknown model {number!r}; choose one of "
                          f"{', '.join(map(str, sorted(SPECS)))}") from None
