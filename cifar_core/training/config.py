"""Training configuration: the report's protocol as the ``seed`` profile, plus overrides.

Every value is validated here, before any data is loaded or any model built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property

from cifar_core.errors import ConfigError
from cifar_core.models.specs import Budget, ModelSpec, get_spec

LABEL_SETS = ("fine", "coarse")
DEFAULT_SEED = 42  # one global seed for Python, NumPy and TensorFlow, as in the report

HEAD_LEARNING_RATE = 1e-3  # Adam's default: models 1-5, and frozen-base runs (head only)

PROFILES: dict[str, dict] = {
    # The report's protocol: up to 50 epochs, batch 50, early stopping on validation loss
    # with patience 3, keeping the best weights.
    "seed": {"epochs": 50, "batch_size": 50, "patience": 3},
    # Demos and smoke runs: a few epochs, larger batches.
    "quick": {"epochs": 3, "batch_size": 128, "patience": 3,
              # model 7: a small search (a few minutes on CPU), same protocol otherwise
              "search_trials": 4, "search_folds": 2, "search_epochs": 3, "grid_epochs": 5,
              "grid_trials": 4},
}
# What a spec may set for the seed profile (model 8's own budget; None: the profile's).
SPEC_BUDGET = tuple(f.name for f in fields(Budget))
SEARCH_MODES = ("auto", "cached", "full")  # auto: cached on CPU, full where a GPU is visible
# Model 7's search settings: (CLI flag, lowest, highest); the Train page's fields use them too.
SEARCH_LIMITS = {
    "search_trials": ("--trials", 1, 1000), "search_folds": ("--folds", 2, 10),
    "search_epochs": ("--search-epochs", 1, 10_000),
    "search_batch_size": ("--search-batch-size", 1, 100_000),
    "grid_epochs": ("--grid-epochs", 1, 10_000),
    "grid_batch_size": ("--grid-batch-size", 1, 100_000),
    "grid_trials": ("--grid-trials", 1, 100_000)}
# How many values each searched hyperparameter can take, and how many of stage 1's best trials
# define stage 2's grid: the sizes of cifar_core.search.space's SEARCH_SPACE and its TOP_K,
# here so that a search's cost is known without importing keras-tuner (tests/test_training.py
# checks that the two agree).
SEARCH_SPACE_SIZES = {"units_1": 5, "units_2": 4, "dropout": 6, "learning_rate": 3,
                      "optimizer": 2}
SEARCH_TOP_TRIALS = 3


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does; saved in ``config.json``. It checks itself when made
    (a ``ConfigError`` naming the setting), so a config that exists is a valid one."""

    model: int
    labels: str = "fine"
    profile: str = "seed"
    epochs: int = 50
    batch_size: int = 50
    patience: int = 3  # early stopping on val_loss; best weights restored
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    seed: int = DEFAULT_SEED
    validation_fraction: float = 0.2
    freeze_base: bool = False  # backbone models only: the frozen feature-extractor variant
    backbone_weights: str | None = None  # "imagenet", a file path, or None (random init)
    hidden_units: tuple[int, ...] | None = None  # override the spec's head (model 7's search)
    dropout: float | None = None
    # Frozen base with flip-only augmentation: train the head on cached base features (four
    # flip variants per image); False computes the frozen base on the fly (no disk cache).
    feature_cache: bool = True
    # Model 7's two-stage search (cifar_core.search); defaults are the report's protocol.
    search_mode: str = "auto"  # cached: trials on frozen features; full: trials fine-tune all
    search_trials: int = 30  # stage 1: RandomSearch trials
    search_folds: int = 3  # stratified cross-validation folds per trial (both stages)
    search_epochs: int = 20  # stage 1 epochs per fold (no early stopping)
    search_batch_size: int = 250  # stage 1 batch size
    grid_epochs: int = 50  # stage 2 (GridSearch) epochs per fold, early stopping on val_loss
    grid_batch_size: int = 50  # stage 2 batch size
    grid_trials: int | None = None  # cap on stage 2 grid combinations (None: all of them)
    # Stage 2 scores each combination on one train/validation split (the first fold), as the
    # report's GridSearch did (it cross-validated stage 1 only); None: all search_folds.
    grid_folds: int | None = 1
    # Fine-tuning a backbone model: first train the head alone on cached frozen-base features
    # (the config's optimizer and learning rate, early stopping), then fine-tune everything
    # from that head. Model 7's cached search turns it on (its trials scored exactly those
    # heads); it shortens the end-to-end fine-tune, the slow part on a CPU.
    warm_start: bool = False
    head_learning_rate: float | None = None  # warm start: the head phase's (None: the same)

    def __post_init__(self):
        # JSON and the CLI give lists; a head is a tuple (hashable, comparable).
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        _check(self)

    @cached_property
    def spec(self) -> ModelSpec:
        """The model spec with this config's head and freezing applied (derived once)."""
        return resolve_spec(self.model, hidden_units=self.hidden_units, dropout=self.dropout,
                            freeze_base=self.freeze_base)

    def check_fits(self, num_train: int) -> None:
        """Refuse a batch larger than the ``num_train`` images training will have."""
        if self.batch_size > num_train:
            raise ConfigError(f"batch size {self.batch_size} is larger than the {num_train} "
                              "training images")

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.hidden_units is not None:
            data["hidden_units"] = list(self.hidden_units)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> TrainConfig:
        """The config ``to_dict`` wrote (a job's request), checked again: a setting this
        version does not know, a missing model or a value out of range is a ``ConfigError``
        naming it, never a silently different training."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a training config must be a JSON object, got "
                              f"{type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown settings in the config: {unknown}")
        if "model" not in data:
            raise ConfigError("the config names no model")
        values = dict(data)
        if values.get("hidden_units") is not None:
            values["hidden_units"] = tuple(values["hidden_units"])
        return cls(**values)  # checks itself: an unknown model, a value out of range


def resolve_spec(model: int, *, hidden_units=None, dropout: float | None = None,
                 freeze_base: bool = False) -> ModelSpec:
    """Model ``model``'s spec with a config's head (model 7's search) and freezing applied:
    what ``TrainConfig.spec`` is, and what a recorded run is compared with."""
    spec = get_spec(model)
    net = {}
    if hidden_units is not None:
        net["hidden_units"] = tuple(hidden_units)
    if dropout is not None:
        net["dropout"] = dropout
    if freeze_base:
        net["freeze_backbone"] = True
    return spec.changed(net=net) if net else spec


def current_spec_for_run(model: int, hyperparameters: dict) -> ModelSpec:
    """The spec today's code gives a run of ``model`` with these recorded hyperparameters
    (``config.json``): the model's spec with the run's own head and freezing overrides, so a
    run can be compared with it field by field (``cifar_core.models.specs.spec_differences``).
    Built without a ``TrainConfig``: a run's recorded values need not pass today's checks to
    be compared."""
    return resolve_spec(model, hidden_units=hyperparameters.get("hidden_units"),
                        dropout=hyperparameters.get("dropout"),
                        freeze_base=bool(hyperparameters.get("freeze_base")))


def make_config(model: int, *, labels: str = "fine", profile: str = "seed",
                **overrides) -> TrainConfig:
    """Resolve a profile plus overrides (None values are ignored) into a checked config."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    spec = get_spec(model)
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown settings: {sorted(unknown)}")
    # The spec's step size is for what it trains; with the base frozen only a new head
    # learns, so it gets the head's step of models 1-5 (Adam's default 1e-3).
    learning_rate = (HEAD_LEARNING_RATE if overrides.get("freeze_base")
                     else spec.recipe.learning_rate)
    budget = {}  # a model with its own training budget (model 8) keeps it in the seed profile
    if profile == "seed":
        budget = {k: getattr(spec.budget, k) for k in SPEC_BUDGET
                  if getattr(spec.budget, k) is not None}
    values = {"learning_rate": learning_rate, "optimizer": spec.recipe.optimizer,
              **PROFILES[profile], **budget,
              **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(model=spec.number, labels=labels, profile=profile, **values)


def _check(config: TrainConfig) -> None:
    """Refuse out-of-range values with a message naming the setting (``TrainConfig`` runs
    this when it is made: a config that exists is a valid one)."""
    if isinstance(config.model, bool) or not isinstance(config.model, int):
        raise ConfigError(f"the config's model must be a number, got {config.model!r}")
    get_spec(config.model)  # an unknown model: ConfigError naming the models
    if config.labels not in LABEL_SETS:
        raise ConfigError(f"unknown label set {config.labels!r}; choose fine or coarse")
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if config.epochs > 10_000:
        raise ConfigError(f"epochs must be at most 10000, got {config.epochs}")
    if not isinstance(config.patience, int) or config.patience < 0:
        raise ConfigError(f"patience must be a non-negative integer, got {config.patience!r}")
    if not (isinstance(config.learning_rate, (int, float)) and 0 < config.learning_rate <= 1):
        raise ConfigError(f"learning rate must lie in (0, 1], got {config.learning_rate!r}")
    if config.optimizer not in ("adam", "sgd", "rmsprop", "adamw"):
        raise ConfigError(f"unknown optimizer {config.optimizer!r}")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {config.seed!r}")
    if not 0 < config.validation_fraction < 1:
        raise ConfigError("validation fraction must lie in (0, 1)")
    if config.head_learning_rate is not None and not (
            isinstance(config.head_learning_rate, (int, float))
            and 0 < config.head_learning_rate <= 1):
        raise ConfigError(f"head learning rate must lie in (0, 1], got "
                          f"{config.head_learning_rate!r}")
    if config.dropout is not None and not 0 <= config.dropout < 1:
        raise ConfigError(f"dropout must lie in [0, 1), got {config.dropout}")
    if config.hidden_units is not None and any(u < 1 for u in config.hidden_units):
        raise ConfigError("hidden units must be positive")
    _check_search_settings(config)
    if config.warm_start and config.spec.recipe.head_warmup_epochs:
        raise ConfigError(f"--warm-start does not apply to model {config.model}: it warms its "
                          "head up itself")
    if config.warm_start and (config.spec.net.stem != "mobilenet" or config.freeze_base):
        raise ConfigError("--warm-start only applies to fine-tuning a backbone model "
                          f"(models 6-7 without --freeze-base), not model {config.model}"
                          + (" with --freeze-base" if config.freeze_base else ""))
    if config.freeze_base and config.spec.net.stem != "mobilenet":
        raise ConfigError(f"--freeze-base only applies to backbone models, not model "
                          f"{config.model}")


def _check_search_settings(config: TrainConfig) -> None:
    """Model 7's search settings: positive, bounded, a known mode."""
    if config.search_mode not in SEARCH_MODES:
        raise ConfigError(f"unknown search mode {config.search_mode!r}; choose one of "
                          f"{', '.join(SEARCH_MODES)}")
    if not isinstance(config.feature_cache, bool):
        raise ConfigError(f"feature cache must be true or false, got {config.feature_cache!r}")
    limits = {**SEARCH_LIMITS, "grid_folds": ("--grid-folds", 1, config.search_folds)}
    for name, (flag, low, high) in limits.items():
        value = getattr(config, name)
        if name in ("grid_trials", "grid_folds") and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{flag} ({name}) must be an integer in [{low}, {high}], "
                              f"got {value!r}")


# ----------------------------------------------------------------------------- in words


@dataclass(frozen=True)
class SearchWorkload:
    """How much training model 7's two-stage search implies, before it runs.

    Stage 2's grid depends on stage 1's results, so its size is an upper bound: the
    combinations of the values stage 1's best trials can differ in, capped by ``grid_trials``.
    Stage 2 and the final training stop early, so their epochs are upper bounds too.
    """

    trials: int  # stage 1 (RandomSearch)
    folds: int  # cross-validation folds per stage 1 trial
    search_epochs: int  # per stage 1 training, no early stopping
    grid_combinations: int  # stage 2 (GridSearch), at most
    grid_folds: int  # folds each stage 2 combination is scored on
    grid_epochs: int  # per stage 2 training, at most
    final_epochs: int  # the chosen configuration retrained, at most

    @property
    def stage1_trainings(self) -> int:
        return self.trials * self.folds

    @property
    def stage2_trainings(self) -> int:
        return self.grid_combinations * self.grid_folds

    @property
    def max_epochs(self) -> int:
        """Epochs of every training the search and the final model do, at most."""
        return (self.stage1_trainings * self.search_epochs
                + self.stage2_trainings * self.grid_epochs + self.final_epochs)


def largest_grid(search_trials: int) -> int:
    """The most combinations stage 2 can have: each hyperparameter varies over at most the
    values of stage 1's best trials (fewer when fewer trials ran, never more than it has)."""
    top = min(SEARCH_TOP_TRIALS, search_trials)
    size = 1
    for count in SEARCH_SPACE_SIZES.values():
        size *= min(top, count)
    return size


def search_workload(config: TrainConfig) -> SearchWorkload:
    """The training ``config``'s search implies (see ``SearchWorkload``)."""
    grid = largest_grid(config.search_trials)
    if config.grid_trials is not None:
        grid = min(grid, config.grid_trials)
    return SearchWorkload(
        trials=config.search_trials, folds=config.search_folds,
        search_epochs=config.search_epochs, grid_combinations=grid,
        grid_folds=config.grid_folds or config.search_folds, grid_epochs=config.grid_epochs,
        final_epochs=config.epochs)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


SEARCH_MODE_WORDS = {
    "cached": "Cached mode: each trial trains only the head, on the frozen base's cached "
              "features (fast on a CPU).",
    "full": "Full mode: each trial fine-tunes the whole network (slow without a GPU).",
    "auto": "Auto mode: cached on a CPU (each trial trains only the head, on the frozen "
            "base's cached features), full where a GPU is visible (each trial fine-tunes the "
            "whole network).",
}


def describe_search_workload(workload: SearchWorkload, search_mode: str = "auto") -> str:
    """The search's cost in words, e.g. for the Train page next to the search settings."""
    return (
        f"Stage 1: {_count(workload.trials, 'trial')} x {_count(workload.folds, 'fold')} = "
        f"{_count(workload.stage1_trainings, 'training')} of "
        f"{_count(workload.search_epochs, 'epoch')} each. Stage 2: at most "
        f"{_count(workload.grid_combinations, 'combination')} x "
        f"{_count(workload.grid_folds, 'fold')} = at most "
        f"{_count(workload.stage2_trainings, 'training')} of up to "
        f"{_count(workload.grid_epochs, 'epoch')} (early stopping). Then the chosen "
        f"configuration trains for up to {_count(workload.final_epochs, 'epoch')}: at most "
        f"{workload.max_epochs:,} epochs in all. "
        + SEARCH_MODE_WORDS.get(search_mode, f"{search_mode} mode."))


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


# How a spec's own budget (SPEC_BUDGET) reads when a config trains with other values.
_BUDGET_WORDS = {
    "epochs": lambda value, own: f"{value} epochs instead of {own}",
    "batch_size": lambda value, own: f"batch {value} instead of {own}",
    "patience": lambda value, own: f"early-stopping patience {value} instead of {own}",
    "validation_fraction": lambda value, own: (f"{_percent(value)} held out for validation "
                                               f"instead of {_percent(own)}"),
}
_OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW"}


def describe_change(config: TrainConfig) -> str:
    """What model ``config.model`` adds, true for this config.

    The spec's own words, except that model 7's search states the trials and folds this
    config runs, and values the spec fixes for its own protocol (model 8's epochs, held-out
    share...) that this config changes (another profile, an override, a frozen base) are
    named after it.
    """
    spec = get_spec(config.model)
    if spec.recipe.hyperparameter_search:
        change = (f"head and training hyperparameters chosen by RandomSearch "
                  f"({_count(config.search_trials, 'trial')}, {config.search_folds}-fold CV) "
                  "then GridSearch")
    else:
        change = spec.change
    own = spec.budget
    differences = [_BUDGET_WORDS[name](getattr(config, name), getattr(own, name))
                   for name in SPEC_BUDGET
                   if getattr(own, name) is not None
                   and getattr(config, name) != getattr(own, name)]
    if config.freeze_base:
        differences.append("the base frozen (only the head trains)")
    if not spec.recipe.hyperparameter_search and config.learning_rate != spec.recipe.learning_rate:
        differences.append(f"learning rate {config.learning_rate:g} instead of "
                           f"{spec.recipe.learning_rate:g}")
    if differences:
        change += "; this job: " + ", ".join(differences)
    return change


def describe_training(config: TrainConfig) -> str:
    """The training values ``config`` uses, in one sentence (epochs, batch, early stopping,
    optimizer and step, the validation share)."""
    spec = config.spec
    parts = [(f"up to {_count(config.epochs, 'epoch')}" if config.patience
              else _count(config.epochs, "epoch")) + f" at batch {config.batch_size}",
             (f"early stopping after {_count(config.patience, 'epoch')} without a better "
              "validation loss") if config.patience else "no early stopping"]
    if spec.recipe.hyperparameter_search:
        parts.append("optimizer and learning rate chosen by the search")
    else:
        optimizer = _OPTIMIZER_NAMES.get(config.optimizer, config.optimizer)
        parts.append(f"{optimizer} at learning rate {config.learning_rate:g}"
                     + (" with cosine decay" if spec.recipe.lr_schedule == "cosine" else ""))
    parts.append(f"{_percent(config.validation_fraction)} of each class held out for "
                 "validation")
    return "Training: " + ", ".join(parts) + "."


def freeze_base_effect(model: int) -> str | None:
    """What ``--freeze-base`` does to ``model``, in words; None where it does not apply (no
    MobileNet base)."""
    spec = get_spec(model)
    if spec.net.stem != "mobilenet":
        return None
    if spec.recipe.hyperparameter_search:
        return ("Keep the MobileNet base frozen (a feature extractor): the head the search "
                "chooses is trained on top of it, instead of fine-tuning the whole network.")
    if spec.net.frozen_through:
        return (f"Freeze the whole MobileNet base: only the head trains, at Adam "
                f"{HEAD_LEARNING_RATE:g}, on cached features of the whole base at "
                f"{spec.net.input_size} px, instead of fine-tuning the base above its frozen lower "
                "part" + (" after a head warm-up" if spec.recipe.head_warmup_epochs else "") + ".")
    return (f"Keep the MobileNet base frozen (a feature extractor): only the head trains, at "
            f"Adam {HEAD_LEARNING_RATE:g}, instead of fine-tuning the whole base at "
            f"{spec.recipe.learning_rate:g}.")
