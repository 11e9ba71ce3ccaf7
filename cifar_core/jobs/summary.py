"""A job's request and results in words: what the Train page's job cards and the Overview's
first jobs show (the settings a job overrode, its test accuracy), read from its run folder."""

from __future__ import annotations

import functools
from pathlib import Path

from cifar_core.jobs.progress import describe_progress
from cifar_core.jobs.status import JobInfo
from cifar_core.models.specs import SPECS
from cifar_core.runs.files import read_json
from cifar_core.runs.store import METRICS_FILE

LABEL_WORDS = {"fine": "100 classes", "coarse": "20 superclasses"}

# Each override as a job card names it (values as the job's config holds them).
OVERRIDE_WORDS = {
    "epochs": lambda value: f"{value} epoch" + ("" if value == 1 else "s"),
    "batch_size": lambda value: f"batch {value}",
    "patience": lambda value: "no early stopping" if value == 0 else f"patience {value}",
    "learning_rate": lambda value: f"learning rate {value:g}",
    "seed": lambda value: f"seed {value}",
    "freeze_base": lambda value: "base frozen",
    "search_mode": lambda value: f"{value} search",
    "search_trials": lambda value: f"{value} trial" + ("" if value == 1 else "s"),
    "search_folds": lambda value: f"{value}-fold CV",
    "search_epochs": lambda value: f"{value} search epochs",
    "grid_epochs": lambda value: f"{value} grid epochs",
    "grid_trials": lambda value: f"at most {value} grid combinations",
}


def describe_settings(profile: str | None, overrides: dict) -> str:
    """The profile and what was overridden: ``"quick profile, 3 epochs, base frozen"``
    (in ``JOB_OVERRIDES`` order; an override this version has no words for, as itself)."""
    words = [OVERRIDE_WORDS[name](overrides[name]) if name in OVERRIDE_WORDS
             else f"{name} {overrides[name]}" for name in overrides]
    return ", ".join([f"{profile or '?'} profile", *words])


def describe_request(job: JobInfo) -> str:
    """What the job was asked to train, in words (its card's title)."""
    return describe_settings(job.profile, job.request.get("overrides") or {})


def describe_labels(labels: str | None) -> str:
    return LABEL_WORDS.get(labels or "", labels or "?")


def headline_metrics(run_dir: Path) -> dict | None:
    """Test accuracies of a finished run from its ``metrics.json`` (None without one):
    ``test_top1``, ``test_top5``, ``test_superclass_top1`` (None without superclasses) and
    ``label_set``. Read once per version of the file: the Train page asks every 2 seconds."""
    file = Path(run_dir) / METRICS_FILE
    try:
        stat = file.stat()
    except OSError:
        return None
    headline = _read_headline(str(file), stat.st_mtime_ns, stat.st_size)
    return dict(headline) if headline is not None else None


@functools.lru_cache(maxsize=256)
def _read_headline(file: str, mtime_ns: int, size: int) -> dict | None:
    try:
        metrics = read_json(Path(file))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    headline = {name: metrics.get(name) if _is_number(metrics.get(name)) else None
                for name in ("test_top1", "test_top5", "test_superclass_top1")}
    if headline["test_top1"] is None:
        return None
    headline["label_set"] = metrics.get("label_set")
    return headline


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe_metrics(headline: dict) -> str:
    """``"test top-1 45.2% · superclass 61.0%"``; a superclass model: ``"test top-1 61.0%
    (20 superclasses)"`` (its top-1 is its superclass accuracy)."""
    text = f"test top-1 {100 * headline['test_top1']:.1f}%"
    if headline.get("label_set") == "coarse":
        return text + " (20 superclasses)"
    if headline.get("test_superclass_top1") is not None:
        text += f" · superclass {100 * headline['test_superclass_top1']:.1f}%"
    return text


def model_in_words(model: int | None) -> str:
    if model in SPECS:
        return f"{model} · {SPECS[model].title}"
    return str(model) if model is not None else "?"


def queue_rows(jobs: list[JobInfo]) -> list[dict]:
    """One row per job for a table a person reads: model, labels, settings, status, where it
    is, run id."""
    return [{"model": model_in_words(job.model), "labels": describe_labels(job.labels),
             "settings": describe_request(job), "status": job.status,
             "progress": describe_progress(job), "run id": job.run_id} for job in jobs]
