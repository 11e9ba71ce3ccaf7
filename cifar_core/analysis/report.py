"""The stakeholder report's data: headline numbers, the run it looks into, metrics as CSV.

Every number names the run it came from, and each row carries the run's configuration (model,
hyperparameters, seed, data identity, code version), so a reader can trace and reproduce any
figure. No figures here: the HTML export, which embeds them, is ``cifar_core.reports.html``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from cifar_core.analysis.classes import has_superclasses, per_class_table
from cifar_core.analysis.runs import (
    ProgressionPoint,
    RunKey,
    choose_counting_runs,
    dataset_name,
    datasets_of,
    model_title,
    run_minutes,
    usable_runs,
)
from cifar_core.models.specs import SPECS
from cifar_core.runs.store import RunRecord


@dataclass(frozen=True)
class HeadlineNumber:
    label: str
    value: float  # a fraction in [0, 1]
    run_id: str
    detail: str


def focus_run(counting: Mapping[RunKey, RunRecord]) -> RunRecord | None:
    """The run the presentation looks into: the best fine-label run (superclass-capable
    runs first), else the best run of any label set."""
    fine = [r for (_, labels), r in counting.items() if labels == "fine"]
    pool = [r for r in fine if has_superclasses(r.metrics)] or fine or list(counting.values())
    return max(pool, key=lambda r: (r.metrics["test_top1"], r.model_number or 0), default=None)


def headline_numbers(points: Iterable[ProgressionPoint]) -> list[HeadlineNumber]:
    """Best fine top-1, the first model's top-1, and the best superclass accuracy."""
    points = list(points)
    fine = [p for p in points if p.labels == "fine"]
    numbers = []
    if fine:
        best = max(fine, key=lambda p: (p.top1, p.model))
        first = min(fine, key=lambda p: p.model)
        numbers.append(HeadlineNumber("Best fine top-1", best.top1, best.run_id,
                                      model_title(best.model)))
        if first.run_id != best.run_id:
            gain = 100 * (best.top1 - first.top1)
            numbers.append(HeadlineNumber(
                f"Model {first.model} fine top-1", first.top1, first.run_id,
                f"{gain:+.1f} points to the best model"))
        if best.top5 is not None:
            numbers.append(HeadlineNumber("Best model's top-5", best.top5, best.run_id,
                                          model_title(best.model)))
    supers = [(p.superclass, p) for p in points if p.superclass is not None]
    if supers:
        value, point = max(supers, key=lambda item: (item[0], item[1].model))
        how = "trained on superclasses" if point.labels == "coarse" else "fine run, mapped"
        numbers.append(HeadlineNumber("Best superclass accuracy", value, point.run_id,
                                      f"{model_title(point.model)} ({how})"))
    return numbers


def report_title(counting: Mapping[RunKey, RunRecord]) -> str:
    """The presentation's title, named after the counted runs' data set."""
    data_name = dataset_name(next(iter(counting.values()), None)) or "CIFAR-100"
    return f"{data_name}: from a one-layer CNN to transfer learning"


def report_scope(records: Iterable[RunRecord], choices: Mapping[str, str] | None = None,
                 dataset: str | None = None
                 ) -> tuple[str | None, dict[str, str], dict[RunKey, RunRecord]]:
    """(data set key, {data set key: label}, counted runs) of a presentation: the data set
    asked for where it has runs, else the newest one, and its counting run per model (the
    user's ``choices``, else ``choose_counting_runs``'s default), as the Present page has it."""
    records = list(records)
    datasets = datasets_of(records)
    scope = dataset if dataset in datasets else next(iter(datasets), None)
    return scope, datasets, choose_counting_runs(records, choices, scope)


@dataclass(frozen=True)
class ModelStep:
    """One counted model against the counted model before it (same label set)."""

    record: RunRecord
    previous: RunRecord | None
    changes: tuple[str, ...]  # "Model 5: random ... flips": each model's change since then
    gain: float | None  # top-1 against the previous model, in percentage points


def progression_steps(counting: Mapping[RunKey, RunRecord]) -> list[ModelStep]:
    """The counted runs in model order, each with what changed since the previous counted
    model of its label set: the run's own recorded change, and those of models in between
    that have no counted run (the progression adds one change a model)."""
    steps, last = [], {}
    for (model, labels), record in sorted(counting.items(),
                                          key=lambda item: (item[0][0], item[0][1] != "fine")):
        previous = last.get(labels)
        changes = []
        if previous is not None:
            for number in range(previous.model_number + 1, model):
                if number in SPECS:
                    changes.append(f"Model {number}: {SPECS[number].change}")
            own = ((record.config or {}).get("model") or {}).get("change") or (
                SPECS[model].change if model in SPECS else None)
            if own:
                changes.append(f"Model {model}: {own}")
        gain = (100 * (record.metrics["test_top1"] - previous.metrics["test_top1"])
                if previous is not None else None)
        steps.append(ModelStep(record, previous, tuple(changes), gain))
        last[labels] = record
    return steps


# --- CSV ---------------------------------------------------------------------------------

METRICS_CSV_COLUMNS = (
    "run_id", "counts", "model", "model_title", "labels", "profile", "status", "dataset",
    "dataset_sha256", "num_train", "num_test", "seed", "epochs", "epochs_run", "batch_size",
    "learning_rate", "optimizer", "training_seconds", "run_minutes", "test_top1", "test_top5",
    "test_superclass_top1", "git_commit", "git_dirty", "tensorflow", "keras", "created_at")


def config_row(record: RunRecord) -> dict:
    """One run's configuration and provenance, flat: the CSV's columns before the metrics."""
    config = record.config or {}
    hyper = config.get("hyperparameters") or {}
    dataset = config.get("dataset") or {}
    environment = config.get("environment") or {}
    git = environment.get("git") or {}
    packages = environment.get("packages") or {}
    training = (record.metrics or {}).get("training") or {}
    return {
        "run_id": record.run_id, "model": record.model_number,
        "model_title": model_title(record.model_number) if record.model_number else None,
        "labels": record.label_set, "profile": config.get("profile"), "status": record.status,
        "dataset": dataset.get("name"), "dataset_sha256": dataset.get("sha256"),
        "num_train": dataset.get("num_train"), "num_test": dataset.get("num_test"),
        "seed": config.get("seed"), "epochs": hyper.get("epochs"),
        "epochs_run": training.get("epochs_run"), "batch_size": hyper.get("batch_size"),
        "learning_rate": hyper.get("learning_rate"), "optimizer": hyper.get("optimizer"),
        "training_seconds": training.get("training_seconds"),
        "run_minutes": run_minutes(record),
        "git_commit": git.get("commit"), "git_dirty": git.get("dirty"),
        "tensorflow": packages.get("tensorflow"), "keras": packages.get("keras"),
        "created_at": record.run.get("created_at"),
    }


def metrics_frame(records: Iterable[RunRecord],
                  counting: Mapping[RunKey, RunRecord] | None = None) -> pd.DataFrame:
    """Every completed run's headline metrics with the configuration behind them."""
    counted = {r.run_id for r in (counting or {}).values()}
    rows = []
    for record in usable_runs(records):
        metrics = record.metrics or {}
        rows.append({**config_row(record), "counts": record.run_id in counted,
                     "test_top1": metrics.get("test_top1"),
                     "test_top5": metrics.get("test_top5"),
                     "test_superclass_top1": metrics.get("test_superclass_top1")})
    return pd.DataFrame(rows, columns=list(METRICS_CSV_COLUMNS))


def metrics_csv(records: Iterable[RunRecord],
                counting: Mapping[RunKey, RunRecord] | None = None) -> str:
    return metrics_frame(records, counting).to_csv(index=False)


def per_class_csv(record: RunRecord) -> str:
    """One run's per-class precision, recall, F1 and support, with its run id."""
    table = per_class_table(record.metrics)
    table.insert(0, "run_id", record.run_id)
    return table.to_csv(index=False)
