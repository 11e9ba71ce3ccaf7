"""The report's seven models as declarative specs: each one is the previous plus one change.
Model 8 goes beyond the report, as a handful of changes to model 6, each one measured.

A spec is four parts, each a frozen dataclass with the report's model 1 as its defaults:
``Architecture`` (what is built), ``Augmentation`` (what training sees), ``Recipe`` (how it
is optimised) and ``Budget`` (how long; None: the profile's). ``derive`` makes every model a
few-line diff of its predecessor, so this file reads top to bottom as the progression; each
model's measured result (BENCHMARKS.md, the CIFAR-10 images, seed profile, 2 cores) is the
one line above it, and the history of trials lives in BENCHMARKS.md only.
``cifar_core.models.builder.build_model`` turns a spec into Keras. A run records its spec flat
(``ModelSpec.to_dict``: the field names of every earlier version), so runs written by older
code still compare field by field (``spec_differences``).
The report's published results (CIFAR-100, its Figure 2) sit in ``REPORT_RESULTS``, labelled as
the report's: they are reference markers, never our measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

from cifar_core.errors import ConfigError

Stem = Literal["conv", "mobilenet"]


@dataclass(frozen=True)
class Architecture:
    """The network: a stem, an optional pretrained base, a head."""

    stem: Stem = "conv"  # "conv": one small Conv2D + MaxPool; "mobilenet": ImageNet backbone
    conv_filters: int = 10
    conv_kernel: int = 2
    hidden_units: tuple[int, ...] = ()  # hidden Dense layers (ReLU) between stem and output
    dropout: float = 0.0  # Dropout after each hidden layer (0 = none)
    backbone: str = "mobilenet_v1"  # used when stem == "mobilenet"
    backbone_alpha: float = 1.0
    freeze_backbone: bool = False  # False: fine-tune all of it, as the report did
    input_size: int = 32  # resolution fed to the backbone (the report: 32, no resizing)
    pooling: Literal["flatten", "average"] = "flatten"  # how the head reads the feature map
    # Fine-tune only the base above this layer: it and everything below stay frozen, so their
    # output for each flip of each image is computed once and cached (cifar_core.features).
    frozen_through: str | None = None
    # The base's batch norm folded into the convolutions, 1x1 convolutions as Dense layers;
    # above ``frozen_through`` in mixed bfloat16 where the CPU has bfloat16 matrix units (the
    # same function, trained about twice as fast: cifar_core.models.backbone.fold_batch_norm).
    fold_batch_norm: bool = False


@dataclass(frozen=True)
class Augmentation:
    """What training sees of each image (never applied to validation or test images)."""

    flips: bool = False  # random horizontal + vertical flips before the network
    vertical_flips: bool = True  # with flips: also flip up-down (False: mirror only)
    # Random translation of the cached maps by up to this many cells, zero-filled
    # (cifar_core.features.augment.translate). 0: none.
    feature_shift: int = 0
    # A window of this many cells a side of each training map set to zero, centred at a seeded
    # random cell (cutout: cifar_core.features.augment.cut_out). 0: none.
    feature_cutout: int = 0


@dataclass(frozen=True)
class Recipe:
    """How the network is optimised, and how the saved model predicts."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3  # Adam's default
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 by the end
    head_warmup_epochs: int = 0  # epochs training the head alone (Adam 1e-3) before the rest
    # Cross-entropy against targets of 1 - eps on the true class and eps / classes on every
    # class (training on cached features only). 0: plain targets.
    label_smoothing: float = 0.0
    # The saved model gets an exponential moving average of the fine-tuned weights, updated
    # after every optimizer step with this momentum (1 / (1 - momentum) steps is its reach),
    # instead of the last step's weights (training on cached features only). 0: the last.
    weight_ema: float = 0.0
    test_time_flips: bool = False  # the saved model averages the image and its mirror image
    hyperparameter_search: bool = False  # model 7: head and training values chosen by search


@dataclass(frozen=True)
class Budget:
    """The seed profile's training budget for a model; None: the profile's (50 epochs at batch
    50, early stopping with patience 3, 20% of each class held out for validation). Patience 0:
    no early stopping."""

    epochs: int | None = None
    batch_size: int | None = None
    patience: int | None = None
    validation_fraction: float | None = None


PARTS = {"net": Architecture, "aug": Augmentation, "recipe": Recipe, "budget": Budget}
# A part's field recorded under another name in config.json (the name of the flat spec).
_RECORDED_AS = {("aug", "flips"): "augment_flips"}


@dataclass(frozen=True)
class ModelSpec:
    """Everything that distinguishes one model of the progression from another."""

    number: int
    title: str
    change: str  # what this model adds to the previous one (the report's Table 1)
    net: Architecture = field(default_factory=Architecture)
    aug: Augmentation = field(default_factory=Augmentation)
    recipe: Recipe = field(default_factory=Recipe)
    budget: Budget = field(default_factory=Budget)

    def changed(self, **parts: dict) -> ModelSpec:
        """This spec with the given fields of its parts changed, e.g.
        ``spec.changed(net={"freeze_backbone": True})``."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ConfigError(f"a spec has no part {sorted(unknown)}; its parts are "
                              f"{list(PARTS)}")
        return replace(self, **{name: replace(getattr(self, name), **values)
                                for name, values in parts.items()})

    def to_dict(self) -> dict:
        """The spec flat, as a run's ``config.json`` records it (lists for tuples)."""
        data = {"number": self.number, "title": self.title, "change": self.change}
        for part_name in PARTS:
            for name, value in asdict(getattr(self, part_name)).items():
                data[_RECORDED_AS.get((part_name, name), name)] = (
                    list(value) if isinstance(value, tuple) else value)
        return data


def flat_defaults() -> dict:
    """Every recorded field of a spec and its default (what a run that does not record a
    field, written before the field existed, trained with)."""
    defaults = {}
    for part_name, part in PARTS.items():
        for f in fields(part):
            value = f.default
            defaults[_RECORDED_AS.get((part_name, f.name), f.name)] = (
                list(value) if isinstance(value, tuple) else value)
    return defaults


def derive(base: ModelSpec, number: int, title: str, change: str, **parts: dict) -> ModelSpec:
    """``base`` with a new number, title and change, and the given fields of its parts changed:
    ``derive(MODEL_1, 2, "+ hidden layer 128", "...", net={"hidden_units": (128,)})``."""
    return replace(base.changed(**parts), number=number, title=title, change=change)


# Each model: its measured result (test top-1 on the CIFAR-10 images, seed profile, 2 cores,
# BENCHMARKS.md "Models 1-8"), then what it changes.

# 55.3%
MODEL_1 = ModelSpec(
    number=1, title="Simple CNN",
    change="Conv2D (10 filters, kernel 2, ReLU), MaxPooling, no hidden dense layer")
# 57.6%
MODEL_2 = derive(MODEL_1, 2, "+ hidden layer 128", "a hidden Dense layer of 128 units, ReLU",
                 net={"hidden_units": (128,)})
# 58.0%
MODEL_3 = derive(MODEL_2, 3, "+ hidden layer 64", "a second hidden Dense layer of 64 units, ReLU",
                 net={"hidden_units": (128, 64)})
# 57.2%
MODEL_4 = derive(MODEL_3, 4, "+ dropout 0.2", "Dropout 0.2 after each hidden layer",
                 net={"dropout": 0.2})
# 53.8% (upside-down views the test set never shows: BENCHMARKS.md)
MODEL_5 = derive(MODEL_4, 5, "+ flip augmentation",
                 "random horizontal and vertical flips before the network",
                 aug={"flips": True})
# 76.7%. Fine-tuning a pretrained base needs a smaller step than a head trained from scratch:
# at Adam's 1e-3 the base's features are wrecked in the first epoch (18% validation accuracy
# after two epochs on 5,000 images, against 50% at 1e-4), so the step belongs to this change.
MODEL_6 = derive(MODEL_5, 6, "+ MobileNet transfer learning",
                 "MobileNet (alpha 1.0, ImageNet weights, 32x32) fine-tuned in place of the "
                 "small conv stem, at Adam 1e-4",
                 net={"stem": "mobilenet"}, recipe={"learning_rate": 1e-4})
# 76.4% (44.9 min: the search 16.6 with its feature pass, the chosen head fine-tuned 27.4)
MODEL_7 = derive(MODEL_6, 7, "+ hyperparameter search",
                 "head and training hyperparameters chosen by RandomSearch (3-fold CV) then "
                 "GridSearch", recipe={"hyperparameter_search": True})

# Beyond the report: the most accurate model this project trains on 2 CPU cores within an
# hour. MobileNet's ImageNet features are far better at 144 px than at 32. Its lower part
# (through block 6's stride-2 depthwise convolution: 9x9x256 maps) is frozen and computed once
# per image and mirror image; the rest of the base and a new head are fine-tuned on those
# cached maps, batch norm folded (bfloat16 where the CPU has it). Mirror images only (no
# upside-down photos in the test set); blocks 7-13 overfit two maps an image, hence the
# one-cell shifts, smoothed targets and a cosine schedule run to its end; the minutes folding
# saved buy 10% more training images. Each choice's measurement: BENCHMARKS.md, "Model 8".
# 91.4% in 44.8 min
MODEL_8 = derive(MODEL_6, 8, "Beyond the report: MobileNet at 144 px",
                 "144 px input; block 6's 1x1 and blocks 7-13 fine-tuned (batch norm folded, "
                 "bfloat16 where the CPU has it) on cached maps of block 6's stride-2 "
                 "depthwise for each image and its mirror image, shifted up to a cell; "
                 "average-pooled head; label smoothing 0.1; cosine Adam 3e-4 over 15 epochs "
                 "after a 1-epoch head warm-up; 10% held out for validation instead of 20%; "
                 "test-time mirror averaging",
                 net={"input_size": 144, "frozen_through": "conv_dw_6_relu",
                      "fold_batch_norm": True, "pooling": "average", "hidden_units": (),
                      "dropout": 0.2},
                 aug={"vertical_flips": False, "feature_shift": 1},
                 recipe={"learning_rate": 3e-4, "lr_schedule": "cosine",
                         "head_warmup_epochs": 1, "label_smoothing": 0.1,
                         "test_time_flips": True},
                 budget={"epochs": 15, "batch_size": 128, "patience": 0,
                         "validation_fraction": 0.1})

SPECS: dict[int, ModelSpec] = {s.number: s for s in (MODEL_1, MODEL_2, MODEL_3, MODEL_4,
                                                      MODEL_5, MODEL_6, MODEL_7, MODEL_8)}

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


# Fields that describe a spec rather than define what is trained, and the values model 7's
# search chooses (its run records the chosen ones in place of the spec's).
DESCRIPTIVE_FIELDS = ("number", "title", "change")
SEARCHED_FIELDS = ("hidden_units", "dropout", "learning_rate", "optimizer")


def spec_differences(recorded: dict | None, spec: ModelSpec) -> list[str]:
    """The fields where the spec a run recorded (its ``config.json`` ``model``) trains
    something other than ``spec``, as ``"name: recorded -> spec"``; empty when they match.

    A run keeps the spec of the code that trained it, so after a spec changes (a reverted
    trial, a new recipe) its folder still says "model 8" but holds another model. A field the
    run does not record (older code, before the field existed) counts as its default then, and
    a run that records no spec at all is not held against any. Titles and descriptions are
    prose; for a searched model, the searched values are the run's own.
    """
    if not recorded:
        return []
    current = spec.to_dict()
    ignored = DESCRIPTIVE_FIELDS + (SEARCHED_FIELDS if spec.recipe.hyperparameter_search else ())
    differences = []
    for name, default in flat_defaults().items():
        if name in ignored:
            continue
        value, wanted = recorded.get(name, default), current[name]
        if isinstance(wanted, list):
            value = list(value or ())
        if value != wanted:
            differences.append(f"{name}: {value!r} -> {wanted!r}")
    return differences
