"""The search's own records in the run folder: ``search.json`` (state) and ``trials.csv``.

``search.json`` holds the settings the search was started with (a restart with other settings
is refused instead of mixing trials of two protocols), each stage's status, the grid derived
from stage 1, which worker ran which trial, and the chosen configuration. keras-tuner keeps its
own state beside it under ``tuner/`` (``stage1/``, ``stage2-<grid>/``), which is what a
restart reloads (``overwrite=False``).

``trials.csv``: one row per trial of both stages: ``stage``, ``trial_id`` (``s1-07``,
``s2-03``), every hyperparameter, ``fold_1``..``fold_k`` (validation accuracy of each fold),
``mean_val_accuracy`` (the objective) and ``seconds``. Unfinished or failed trials have empty
scores. Both files are rewritten atomically after every trial.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifar_core.errors import ConfigError
from cifar_core.models.backbone import weights_identity
from cifar_core.runs.files import atomic_write_text, read_json
from cifar_core.search.space import HYPERPARAMETERS, searched_values

SEARCH_FILE = "search.json"
TRIALS_FILE = "trials.csv"
TUNER_DIR = "tuner"
STATE_VERSION = 1


def search_settings(config, dataset) -> dict:
    """What every trial's score depends on. Changing any of it makes a different search; the
    trial counts (``search_trials``, ``grid_trials``) are not in it: a restart may extend."""
    from cifar_core.search.trials import head_precision  # TensorFlow; only when searching

    spec = config.spec
    weights = weights_identity(config.backbone_weights)
    return {
        "mode": config.search_mode,
        "folds": config.search_folds,
        "search_epochs": config.search_epochs,
        "search_batch_size": config.search_batch_size,
        "grid_epochs": config.grid_epochs,
        "grid_batch_size": config.grid_batch_size,
        "grid_folds": config.grid_folds or config.search_folds,
        "patience": config.patience,
        "seed": config.seed,
        "labels": config.labels,
        "validation_fraction": config.validation_fraction,
        "freeze_base": config.freeze_base,
        "backbone": spec.net.backbone,
        "input_size": spec.net.input_size,
        "weights": weights["sha256"] or weights["weights"],
        "data_sha256": dataset.content_hash if dataset is not None else None,
        # the cached trials' hidden-layer precision (full-mode trials train in float32)
        "head_precision": head_precision() if config.search_mode == "cached" else "float32",
    }


def protocol_digest(settings: dict, stage: int) -> str:
    text = json.dumps({**settings, "stage": stage}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_label(stage: int, trial_id: str) -> str:
    return f"s{stage}-{trial_id}"


@dataclass
class SearchState:
    """``search.json``: read at start, updated after every trial and stage."""

    path: Path
    settings: dict
    stages: dict = field(default_factory=dict)  # "1"/"2" -> status, counts, plan, project
    owners: dict = field(default_factory=dict)  # trial label -> tuner id that ran it
    chosen: dict | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def open(cls, run_dir: Path, settings: dict) -> SearchState:
        """The state of this run's search, or a new one; refuses other settings."""
        path = Path(run_dir) / SEARCH_FILE
        if not path.is_file():
            return cls(path=path, settings=settings)
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable search state ({exc}); start a new run") \
                from None
        saved = data.get("settings") or {}
        differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differ:
            listed = ", ".join(f"{k}={saved.get(k)!r} (now {settings.get(k)!r})"
                               for k in differ)
            raise ConfigError(f"this run's search was started with other settings: {listed}. "
                              "Restart it with the same settings, or start a new run.")
        return cls(path=path, settings=settings, stages=data.get("stages") or {},
                   owners=data.get("owners") or {}, chosen=data.get("chosen"))

    def save(self) -> None:
        with self._lock:
            data = {"schema_version": STATE_VERSION, "settings": self.settings,
                    "stages": self.stages, "owners": self.owners, "chosen": self.chosen}
            atomic_write_text(self.path, json.dumps(data, indent=2, default=_plain) + "\n")

    def stage(self, stage: int) -> dict:
        return self.stages.setdefault(str(stage), {})


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def trial_rows(stage: int, oracle, folds: int, owners: dict) -> list[dict]:
    """``trials.csv`` rows for one stage's oracle, in the order trials started."""
    rows = []
    trials = dict(oracle.trials)  # a snapshot: workers' requests may add trials meanwhile
    for trial_id in list(oracle.start_order):
        trial = trials.get(trial_id)
        if trial is None:
            continue
        values = trial.hyperparameters.values
        row = {"stage": stage, "trial_id": trial_label(stage, trial_id)}
        try:
            row.update(searched_values(values))
        except (KeyError, TypeError, ValueError):
            row.update({name: values.get(name) for name in HYPERPARAMETERS})
        completed = trial.status == "COMPLETED"
        for i in range(1, folds + 1):
            row[f"fold_{i}"] = _metric(trial, f"fold_{i}_val_accuracy") if completed else None
        row["mean_val_accuracy"] = _metric(trial, "val_accuracy") if completed else None
        row["seconds"] = _metric(trial, "seconds")
        row["_status"] = trial.status
        row["_tuner_id"] = owners.get(row["trial_id"])
        rows.append(row)
    return rows


def _metric(trial, name: str):
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_last_value(name)
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def write_trials_csv(path: Path, rows: list[dict], folds: int) -> None:
    columns = ["stage", "trial_id", *HYPERPARAMETERS,
               *(f"fold_{i}" for i in range(1, folds + 1)), "mean_val_accuracy", "seconds"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())


def ranked(oracle) -> list[tuple[str, dict, float]]:
    """Completed trials of an oracle, best mean validation accuracy first (stable on ties)."""
    trials = dict(oracle.trials)
    done = [(tid, trials[tid]) for tid in list(oracle.start_order)
            if tid in trials and trials[tid].status == "COMPLETED"
            and trials[tid].score is not None and np.isfinite(trials[tid].score)]
    done.sort(key=lambda item: -item[1].score)
    return [(tid, searched_values(t.hyperparameters.values), float(t.score)) for tid, t in done]
