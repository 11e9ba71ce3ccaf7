"""What a job runs: a validated training config and its data, as ``job.json`` records them.

A job carries a config, not a command line. ``build_request`` resolves a model, labels,
profile and the settings a person overrode into the ``TrainConfig`` the worker will train
(checked like the CLI checks it, before any run folder is claimed), with the data source and
backbone weights made absolute. ``job.json`` (schema 2) keeps the config itself and, for
people, the request it came from; the worker rebuilds the config with
``TrainConfig.from_dict`` and runs the pipeline with it directly.

Jobs queued by older code (schema 1) recorded ``cifar-core train`` arguments instead;
``read_request`` turns those into the same request, so they still run, and refuses with a
message an argument list it cannot read (the job then fails clearly instead of being lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cifar_core import settings
from cifar_core.errors import ConfigError, DataError
from cifar_core.training.config import TrainConfig, make_config

REQUEST_SCHEMA_VERSION = 2  # job.json: 1 held CLI arguments, 2 holds the config

# Model 7's search settings a job may override.
SEARCH_OVERRIDES = ("search_mode", "search_trials", "search_folds", "search_epochs",
                    "grid_epochs", "grid_trials")
# Every setting a job may override over its profile (the Train page's fields).
JOB_OVERRIDES = ("epochs", "batch_size", "patience", "learning_rate", "seed", "freeze_base",
                 *SEARCH_OVERRIDES)

# Schema 1 only: the flags older code wrote into job.json, and the setting each one set.
_LEGACY_FLAGS = {"--epochs": "epochs", "--batch-size": "batch_size", "--patience": "patience",
                 "--learning-rate": "learning_rate", "--seed": "seed",
                 "--search-mode": "search_mode", "--trials": "search_trials",
                 "--folds": "search_folds", "--search-epochs": "search_epochs",
                 "--grid-epochs": "grid_epochs", "--grid-trials": "grid_trials"}
_LEGACY_TYPES = {"learning_rate": float, "search_mode": str}  # the rest are integers
_LEGACY_IGNORED = ("--artifacts", "--run-dir")  # where: the job's folder says it already


@dataclass(frozen=True)
class JobRequest:
    """A job's config (what trains), data source (None: CIFAR-100 from the Keras cache or
    the download) and the overrides it was asked with (for its card: "3 epochs")."""

    config: TrainConfig
    data: str | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def uses_cifar100(self) -> bool:
        """Whether it trains on CIFAR-100 from the Keras cache (or its download)."""
        return settings.names_cifar100(self.data)

    @property
    def run_prefix(self) -> str:
        """``m<model>-<labels>``: the run folder's name after its time stamp."""
        return f"m{self.config.model}-{self.config.labels}"

    def to_json(self) -> dict:
        """The ``job.json`` fields of this request."""
        return {"config": self.config.to_dict(), "data": self.data,
                "request": {"model": self.config.model, "labels": self.config.labels,
                            "profile": self.config.profile, "overrides": self.overrides}}


def _resolve_data(data) -> str | None:
    chosen = settings.data_source(data)
    if settings.names_cifar100(chosen):
        return chosen
    path = Path(chosen).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (the data set for the job)")
    return str(path.resolve())


def _resolve_weights(backbone_weights) -> str | None:
    chosen = settings.backbone_weights(backbone_weights)
    if chosen == "imagenet":
        return chosen
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such MobileNet weights file")
    return str(path.resolve())


def _check_batch_size(config: TrainConfig, data_source: str | None) -> None:
    """Refuse a batch larger than the training split now, not when the job runs.

    Counting reads file names or tar headers (an image folder) or the train pickle
    (CIFAR-100), so an archive the loader refuses (links, names leaving it, truncated) is
    refused here too, with the loader's message. A source with no training images at all
    is left to the job, whose loading explains what is missing.
    """
    from cifar_core.data import count_training_images, training_split_size

    available = count_training_images(data_source)
    if available:
        config.check_fits(training_split_size(available, config.validation_fraction))


def build_request(*, model: int, labels: str = "fine", profile: str = "quick",
                  data: str | None = None, overrides: dict | None = None,
                  backbone_weights: str | None = None) -> JobRequest:
    """The checked request of a job (``overrides``: ``JOB_OVERRIDES``, None values ignored).

    Raises ``ConfigError`` / ``DataError`` before anything is written (a batch size larger
    than the data's training split included). Paths are made absolute so the job runs the
    same whatever its working folder or environment.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides.get("freeze_base") is False:
        overrides.pop("freeze_base")  # an unticked box overrides nothing
    unsupported = sorted(set(overrides) - set(JOB_OVERRIDES))
    if unsupported:
        raise ConfigError(f"a job cannot override {unsupported}; it can set "
                          f"{sorted(JOB_OVERRIDES)}")
    weights = _resolve_weights(backbone_weights)
    config = make_config(model, labels=labels, profile=profile, **overrides,
                         backbone_weights=weights)
    search = sorted(set(overrides) & set(SEARCH_OVERRIDES))
    if search and not config.spec.recipe.hyperparameter_search:
        raise ConfigError(f"{', '.join(search)}: search settings apply only to model 7 (its "
                          f"hyperparameter search), not model {config.model}")
    data_source = _resolve_data(data)
    _check_batch_size(config, data_source)
    return JobRequest(config, data_source, overrides)


def _legacy_request(arguments: list) -> JobRequest:
    """A schema 1 job's ``cifar-core train`` arguments as a request (the flags older code
    wrote); anything else is refused, naming it."""
    words = [str(word) for word in arguments]
    if words[:1] != ["train"]:
        raise ConfigError(f"job.json (schema 1): not a training command: {words[:3]}")
    values: dict = {"labels": "fine", "profile": "seed"}  # the CLI's defaults
    overrides: dict = {}
    data = weights = None
    index = 1
    while index < len(words):
        flag = words[index]
        if flag == "--freeze-base":
            overrides["freeze_base"] = True
            index += 1
            continue
        if index + 1 >= len(words):
            raise ConfigError(f"job.json (schema 1): {flag} has no value")
        value = words[index + 1]
        index += 2
        if flag in ("--model", "--labels", "--profile"):
            values[flag[2:]] = value
        elif flag == "--data":
            data = value
        elif flag == "--backbone-weights":
            weights = value
        elif flag in _LEGACY_FLAGS:
            name = _LEGACY_FLAGS[flag]
            try:
                overrides[name] = _LEGACY_TYPES.get(name, int)(value)
            except ValueError:
                raise ConfigError(f"job.json (schema 1): {flag} {value!r} is not a valid "
                                  "value") from None
        elif flag not in _LEGACY_IGNORED:
            raise ConfigError(f"job.json (schema 1): the argument {flag} is not one this "
                              "version reads; submit the job again")
    try:
        model = int(values.pop("model"))
    except (KeyError, ValueError):
        raise ConfigError("job.json (schema 1): no valid --model") from None
    config = make_config(model, labels=values["labels"], profile=values["profile"],
                         **overrides, backbone_weights=settings.backbone_weights(weights))
    return JobRequest(config, data, overrides)


def read_request(job: dict) -> JobRequest:
    """The request recorded in ``job.json``: schema 2's config (checked again), or an older
    job's arguments (``_legacy_request``). ``ConfigError`` says what is wrong with it."""
    version = job.get("schema_version", 1)
    if version == 1 and "arguments" in job:
        return _legacy_request(job.get("arguments") or [])
    if version != REQUEST_SCHEMA_VERSION or not isinstance(job.get("config"), dict):
        raise ConfigError(f"job.json: schema {version!r} without a readable config; this "
                          f"version reads schemas 1 and {REQUEST_SCHEMA_VERSION}")
    request = job.get("request") if isinstance(job.get("request"), dict) else {}
    overrides = request.get("overrides") if isinstance(request.get("overrides"), dict) else {}
    data = job.get("data")
    return JobRequest(TrainConfig.from_dict(job["config"]),
                      str(data) if data is not None else None, dict(overrides))


def requested_settings(job: dict | None) -> dict:
    """Model, labels, profile and overrides of a ``job.json`` for display, never raising:
    ``{}`` for a record this version cannot read."""
    try:
        request = read_request(job or {})
    except (ConfigError, DataError, TypeError, ValueError):
        return {}
    return {"model": request.config.model, "labels": request.config.labels,
            "profile": request.config.profile, "overrides": request.overrides}
