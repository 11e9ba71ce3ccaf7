"""Which runs count, and the rows the Overview, the presentation and the report show.

Several runs may exist for one model (reruns, other profiles, other data). For each
(model, label set) one run *counts* in the progression: by default the latest completed run
trained from the model's current spec, or the one the user chose. Runs trained on different
data sets are never mixed in one progression: every view is scoped to one data set, identified
by name and content hash.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from cifar_core.models.specs import SPECS, spec_differences
from cifar_core.runs.files import read_json
from cifar_core.runs.store import (
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILE,
    RUN_ID_PATTERN,
    RunRecord,
    parse_iso,
    runs_root,
)
from cifar_core.runs.summary import run_summary
from cifar_core.training.config import current_spec_for_run

RunKey = tuple[int, str]  # (model number, label set)


def choice_key(key: RunKey) -> str:
    """``(5, "fine")`` -> ``"5-fine"``: how a per-model run choice is stored (session, URL)."""
    return f"{key[0]}-{key[1]}"


def runs_fingerprint(artifacts: str | os.PathLike | None = None) -> tuple:
    """A cheap key that changes whenever a run folder appears, disappears or is rewritten.

    Only ``stat`` calls: the app computes it on every rerun and passes it to its cache, so
    a run that finishes (its ``run.json`` and ``metrics.json`` are replaced) shows up without
    a restart, while unchanged folders are not re-read.
    """
    root = runs_root(artifacts)
    if not root.is_dir():
        return (str(root),)
    entries = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if (entry.name.startswith(".") or not RUN_ID_PATTERN.match(entry.name)
                or entry.is_symlink()):  # list_runs skips links: never look through them
            continue
        stamps = [entry.name]
        for name in (RUN_FILE, CONFIG_FILE, METRICS_FILE):
            try:
                stat = os.stat(os.path.join(entry.path, name))
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append(None)
        entries.append(tuple(stamps))
    return (str(root), *entries)


def is_usable(record: RunRecord) -> bool:
    """A completed run whose metrics could be read: it can be charted and compared."""
    return (record.status == "completed" and isinstance(record.metrics, dict)
            and isinstance(record.metrics.get("test_top1"), (int, float))
            and record.model_number is not None and record.label_set is not None)


def _newest_first(records: Iterable[RunRecord]) -> list[RunRecord]:
    return sorted(records, key=lambda r: (r.run.get("created_at") or "", r.run_id), reverse=True)


def dataset_key(record: RunRecord) -> str | None:
    """``"cifar100:1a2b3c4d5e6f"``: a run's data set by name and content hash."""
    dataset = (record.config or {}).get("dataset") or {}
    if not dataset.get("name"):
        return None
    return f"{dataset['name']}:{str(dataset.get('sha256') or '')[:12]}"


DATASET_NAMES = {"cifar100": "CIFAR-100", "cifar-100": "CIFAR-100", "cifar10": "CIFAR-10",
                 "cifar-10": "CIFAR-10"}  # data set ids as people write them


def dataset_display_name(name: str | None) -> str:
    """``"cifar100"`` -> ``"CIFAR-100"``; an image-folder data set's name as it was given."""
    if not name:
        return "unknown data"
    return DATASET_NAMES.get(str(name).lower(), str(name))


def dataset_name(record: RunRecord | None) -> str | None:
    """The display name of the data set a run was trained on, or None when unrecorded."""
    name = (((record.config or {}).get("dataset") or {}).get("name")) if record else None
    return dataset_display_name(name) if name else None


def dataset_label(record: RunRecord) -> str:
    """``"CIFAR-100 (1a2b3c4d, 40000 train / 10000 test)"``: name, content hash, sizes."""
    dataset = (record.config or {}).get("dataset") or {}
    name = dataset_display_name(dataset.get("name"))
    sha = str(dataset.get("sha256") or "")[:8]
    sizes = f", {dataset.get('num_train')} train / {dataset.get('num_test')} test"
    return f"{name} ({sha}{sizes})" if sha else name


def dataset_short_label(record: RunRecord) -> str | None:
    """``"CIFAR-100 (1a2b3c4d)"``: name and content hash, for narrow table columns."""
    dataset = (record.config or {}).get("dataset") or {}
    if not dataset:
        return None
    sha = str(dataset.get("sha256") or "")[:8]
    name = dataset_display_name(dataset.get("name"))
    return f"{name} ({sha})" if sha else name


def datasets_of(records: Iterable[RunRecord]) -> dict[str, str]:
    """Data sets of the usable runs, newest first: key -> label."""
    found: dict[str, str] = {}
    for record in _newest_first(r for r in records if is_usable(r)):
        key = dataset_key(record)
        if key and key not in found:
            found[key] = dataset_label(record)
    return found


def usable_runs(records: Iterable[RunRecord], dataset: str | None = None) -> list[RunRecord]:
    """Usable runs (of ``dataset`` when given), newest first."""
    return _newest_first(r for r in records if is_usable(r)
                         and (dataset is None or dataset_key(r) == dataset))


def runs_by_model(records: Iterable[RunRecord], dataset: str | None = None
                  ) -> dict[RunKey, list[RunRecord]]:
    """Usable runs grouped by (model, labels), each group newest first, groups in model order."""
    groups: dict[RunKey, list[RunRecord]] = {}
    for record in usable_runs(records, dataset):
        groups.setdefault((record.model_number, record.label_set), []).append(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] != "fine")))


def choose_counting_runs(records: Iterable[RunRecord], choices: Mapping[str, str] | None = None,
                         dataset: str | None = None) -> dict[RunKey, RunRecord]:
    """The run that counts for each (model, labels): the user's choice, else the latest
    trained from the model's current spec, else the latest.

    ``choices`` maps ``choice_key`` to a run id; a choice naming a run that is gone, not
    completed or of another model falls back to the default, so a stale choice never hides a
    model from the progression. Preferring the current spec keeps a run of an earlier or a
    trial recipe (its folder still says "model 8") from standing for the model by default.
    """
    choices = choices or {}
    counting = {}
    for key, group in runs_by_model(records, dataset).items():
        wanted = choices.get(choice_key(key))
        counting[key] = (next((r for r in group if r.run_id == wanted), None)
                         or next((r for r in group if is_current_spec(r)), group[0]))
    return counting


def is_current_spec(record: RunRecord) -> bool:
    """Whether ``record`` was trained from its model's spec as the code defines it now
    (runs that record no spec, from older code, count as current)."""
    return record.model_number in SPECS and not _spec_changes(record)


def _spec_changes(record: RunRecord) -> list[str]:
    if record.model_number not in SPECS:
        return []
    config = record.config or {}
    expected = current_spec_for_run(record.model_number, config.get("hyperparameters") or {})
    return spec_differences(config.get("model"), expected)


@dataclass(frozen=True)
class ProgressionPoint:
    """One model's counted result: every number carries the run it came from."""

    model: int
    labels: str
    run_id: str
    top1: float
    top5: float | None
    superclass: float | None  # fine runs: predictions mapped to superclasses; coarse: = top1
    profile: str | None
    dataset: str | None


def model_title(number: int) -> str:
    spec = SPECS.get(number)
    return f"Model {number}: {spec.title}" if spec else f"Model {number}"


def progression_points(counting: Mapping[RunKey, RunRecord]) -> list[ProgressionPoint]:
    """The counted runs as chart points, in model order (fine before coarse)."""
    points = []
    for (model, labels), record in sorted(counting.items(),
                                          key=lambda item: (item[0][0], item[0][1] != "fine")):
        metrics = record.metrics or {}
        superclass = metrics.get("test_superclass_top1")
        points.append(ProgressionPoint(
            model=model, labels=labels, run_id=record.run_id,
            top1=float(metrics["test_top1"]),
            top5=_float_or_none(metrics.get("test_top5")),
            superclass=_float_or_none(superclass),
            profile=(record.config or {}).get("profile"),
            dataset=dataset_label(record)))
    return points


def _float_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _percent(value) -> float | None:
    return round(100.0 * value, 2) if isinstance(value, (int, float)) else None


RUNS_TABLE_COLUMNS = ("run id", "status", "counts", "model", "labels", "profile", "top-1 %",
                      "top-5 %", "superclass %", "epochs", "training (s)", "whole run (min)",
                      "data set", "problems")
UNKNOWN = "-"  # what a table shows where a run records nothing (yet)


def run_minutes(record: RunRecord) -> float | None:
    """Minutes from the run's start to its end (``run.json``): everything the job did, the
    data loading, feature pass, warm-up, search and evaluation included, which the recorded
    training time (the fit alone) leaves out. None until the run has ended."""
    started, ended = (parse_iso(value) if isinstance(value := record.run.get(key), str)
                      else None for key in ("started_at", "ended_at"))
    if started is None or ended is None or ended < started:
        return None
    return round((ended - started) / 60.0, 2)


def requested_run(record: RunRecord) -> dict:
    """Model, labels and profile of a run: from its ``config.json``, or, for a queued job that
    has not written one yet, from the request in its ``job.json``."""
    config = record.config or {}
    if config:
        return {"model": record.model_number, "labels": record.label_set,
                "profile": config.get("profile")}
    if record.status == "unreadable":  # a folder with links: none of its files is opened
        return {}
    try:  # lazily: an installation without the job system still shows its runs
        from cifar_core.jobs.records import JOB_FILE
        from cifar_core.jobs.request import requested_settings
    except ImportError:
        return {}
    try:
        job = read_json(record.path / JOB_FILE)
    except (OSError, ValueError):
        return {}
    settings = requested_settings(job if isinstance(job, dict) else None)
    return {key: settings[key] for key in ("model", "labels", "profile") if key in settings}


def _text(value) -> str:
    return UNKNOWN if value is None or value == "" else str(value)


def runs_table(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord] | None = None
               ) -> pd.DataFrame:
    """Every run (unreadable ones too, with their reason), newest first, as a table.

    Status and whether the run counts come first, so a narrow screen still shows them;
    model, labels and profile are text (``-`` where a run records none). Two durations:
    ``training (s)`` as training recorded it (the fit), ``whole run (min)`` from start to end.
    """
    counted = {r.run_id for r in (counting or {}).values()}
    rows = []
    for record in _newest_first(records):
        summary = run_summary(record)
        request = requested_run(record)
        notes = list(summary["problems"])
        if summary["error"] and record.status in ("failed", "stopped"):
            notes.append(str(summary["error"]))
        if differences := _spec_changes(record):
            notes.append(f"earlier spec ({'; '.join(differences)})")
        rows.append({
            "run id": record.run_id,
            "status": record.status,
            "counts": record.run_id in counted,
            "model": _text(request.get("model")),
            "labels": _text(request.get("labels")),
            "profile": _text(request.get("profile")),
            "top-1 %": _percent(summary["test_top1"]),
            "top-5 %": _percent(summary["test_top5"]),
            "superclass %": _percent(summary["test_superclass_top1"]),
            "epochs": summary["epochs_run"],
            "training (s)": summary["training_seconds"],
            "whole run (min)": run_minutes(record),
            "data set": dataset_short_label(record) if record.config else None,
            "problems": "; ".join(notes),
        })
    return pd.DataFrame(rows, columns=list(RUNS_TABLE_COLUMNS))


def run_label(record: RunRecord) -> str:
    """A short, unique label for pickers: ``m5 fine · quick · 12.0% · <run id>``."""
    parts = [f"m{record.model_number}" if record.model_number is not None else "m?",
             record.label_set or "?"]
    profile = (record.config or {}).get("profile")
    if profile:
        parts.append(profile)
    top1 = (record.metrics or {}).get("test_top1")
    if isinstance(top1, (int, float)):
        parts.append(f"{100 * top1:.1f}%")
    elif record.status != "completed":
        parts.append(record.status)
    if _spec_changes(record):
        parts.append("earlier spec")
    parts.append(record.run_id)
    return " · ".join(parts)


def find_run(records: Iterable[RunRecord], run_id: str | None) -> RunRecord | None:
    return next((r for r in records if r.run_id == run_id), None) if run_id else None
