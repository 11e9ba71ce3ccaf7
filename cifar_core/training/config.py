"""Training configuration: the report's protocol as the ``seed`` profile, plus overrides.

Every value is validated here, before any data is loaded or any model built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from cifar_core.errors import ConfigError
from cifar_core.models.specs import ModelSpec, get_spec

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
SPEC_BUDGET = ("epochs", "batch_size", "patience", "validation_fraction")
SEARCH_MODES = ("auto", "cached", "full")  # auto: cached on CPU, full where a GPU is visible


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does; saved in ``config.json``."""

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

    def spec(self) -> ModelSpec:
        """The model spec with this config's head and freezing applied."""
        spec = get_spec(self.model)
        changes = {}
        if self.hidden_units is not None:
            changes["hidden_units"] = tuple(self.hidden_units)
        if self.dropout is not None:
            changes["dropout"] = self.dropout
        if self.freeze_base:
            changes["freeze_backbone"] = True
        return replace(spec, **changes) if changes else spec

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.hidden_units is not None:
            data["hidden_units"] = list(self.hidden_units)
        return data


def current_spec_for_run(model: int, hyperparameters: dict) -> ModelSpec:
    """The spec today's code gives a run of ``model`` with these recorded hyperparameters
    (``config.json``): the model's spec with the run's own head and freezing overrides, so a
    run can be compared with it field by field (``cifar_core.models.specs.spec_differences``).
    ``TrainConfig.spec`` alone decides which recorded values shape the spec."""
    known = {f.name for f in fields(TrainConfig)} - {"model"}
    return TrainConfig(model=model, **{k: v for k, v in hyperparameters.items()
                                       if k in known and v is not None}).spec()


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
    learning_rate = HEAD_LEARNING_RATE if overrides.get("freeze_base") else spec.learning_rate
    budget = {}  # a model with its own training budget (model 8) keeps it in the seed profile
    if profile == "seed":
        budget = {k: getattr(spec, k) for k in SPEC_BUDGET if getattr(spec, k) is not None}
    values = {"learning_rate": learning_rate, "optimizer": spec.optimizer,
              **PROFILES[profile], **budget,
              **{k: v for k, v in overrides.items() if v is not None}}
    config = TrainConfig(model=spec.number, labels=labels, profile=profile, **values)
    validate_config(config)
    return config


def validate_config(config: TrainConfig, *, num_train: int | None = None) -> None:
    """Refuse out-of-range values with a message naming the setting."""
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
    validate_search_settings(config)
    if config.warm_start and config.spec().head_warmup_epochs:
        raise ConfigError(f"--warm-start does not apply to model {config.model}: it warms its "
                          "head up itself")
    if config.warm_start and (config.spec().stem != "mobilenet" or config.freeze_base):
        raise ConfigError("--warm-start only applies to fine-tuning a backbone model "
                          f"(models 6-7 without --freeze-base), not model {config.model}"
                          + (" with --freeze-base" if config.freeze_base else ""))
    if config.freeze_base and config.spec().stem != "mobilenet":
        raise ConfigError(f"--freeze-base only applies to backbone models, not model "
                          f"{config.model}")
    if num_train is not None and config.batch_size > num_train:
        raise ConfigError(f"batch size {config.batch_size} is larger than the {num_train} "
                          "training images")


def validate_search_settings(config: TrainConfig) -> None:
    """Model 7's search settings: positive, bounded, a known mode."""
    if config.search_mode not in SEARCH_MODES:
        raise ConfigError(f"unknown search mode {config.search_mode!r}; choose one of "
                          f"{', '.join(SEARCH_MODES)}")
    if not isinstance(config.feature_cache, bool):
        raise ConfigError(f"feature cache must be true or false, got {config.feature_cache!r}")
    limits = {  # setting: (CLI flag, lowest, highest)
        "search_trials": ("--trials", 1, 1000), "search_folds": ("--folds", 2, 10),
        "search_epochs": ("--search-epochs", 1, 10_000),
        "search_batch_size": ("--search-batch-size", 1, 100_000),
        "grid_epochs": ("--grid-epochs", 1, 10_000),
        "grid_batch_size": ("--grid-batch-size", 1, 100_000),
        "grid_trials": ("--grid-trials", 1, 100_000),
        "grid_folds": ("--grid-folds", 1, config.search_folds)}
    for name, (flag, low, high) in limits.items():
        value = getattr(config, name)
        if name in ("grid_trials", "grid_folds") and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{flag} ({name}) must be an integer in [{low}, {high}], "
                              f"got {value!r}")
