"""Words for a job's state: what the Train page prints next to each progress bar."""

from __future__ import annotations

from cifar_core.jobs.queue import JobInfo

PHASE_LABELS = {"features": "computing the frozen base's features"}


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; ``None`` -> ``"unknown"``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def describe_progress(info: JobInfo) -> str:
    """One line: where the job is (queue place, epoch, batch) and how long is left."""
    if info.status == "queued":
        if info.alive is False:
            return "queued, not waiting: its process is gone"
        if info.queue_position is None:
            return "queued"
        return "next to train" if info.queue_position == 1 else \
            f"queued: {info.queue_position - 1} job(s) ahead"
    if info.status != "running":
        done = f"{info.epochs_done} epoch(s)" if info.epochs_done else "no epoch"
        return f"{info.status} after {done}"
    if info.phase in (None, "starting", "loading data"):
        return "starting: loading TensorFlow and the data"
    if info.phase in ("evaluating", "saving"):
        return f"{info.phase} (training done after {info.epochs_done} epoch(s))"
    if info.phase != "training":  # e.g. "features": the frozen base's feature cache
        label = PHASE_LABELS.get(info.phase, info.phase)
        steps = f" {info.step}/{info.steps}" if info.step and info.steps else ""
        return f"{label}{steps}"
    parts = []
    if info.epoch and info.epochs:
        parts.append(f"epoch {min(info.epoch, info.epochs)}/{info.epochs}")
    if info.step and info.steps and info.epoch == info.epochs_done + 1:
        parts.append(f"batch {info.step}/{info.steps}")
    parts.append(f"ETA {format_duration(info.eta_seconds)}" if info.eta_seconds is not None
                 else "ETA after the first epoch")
    return " · ".join(parts)
