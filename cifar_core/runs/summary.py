"""One run folder as a flat dict of its headline facts (status, model, data, results, errors).

What ``cifar-core runs`` prints (a table, or JSON) and what the dashboard's runs table is
built from; here, beside the run folder it reads, so that both use one definition.
"""

from __future__ import annotations

from cifar_core.runs.store import RunRecord


def run_summary(record: RunRecord) -> dict:
    metrics = record.metrics or {}
    training = metrics.get("training") or {}
    config = record.config or {}
    return {
        "run_id": record.run_id,
        "path": str(record.path),
        "status": record.status,
        "model": record.model_number,
        "labels": record.label_set,
        "profile": config.get("profile"),
        "dataset": (config.get("dataset") or {}).get("name"),
        "epochs_run": training.get("epochs_run"),
        "training_seconds": training.get("training_seconds"),
        "test_top1": metrics.get("test_top1"),
        "test_top5": metrics.get("test_top5"),
        "test_superclass_top1": metrics.get("test_superclass_top1"),
        "created_at": record.run.get("created_at"),
        "error": record.run.get("error"),
        "problems": record.problems,
    }
