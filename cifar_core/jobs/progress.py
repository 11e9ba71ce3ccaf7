"""Words for a job's state: what the Train page prints next to each progress bar.

Every phase reads the same way, whatever it is: its words (``PHASE_LABELS``), its count and
the ETA ("computing the frozen base's features · 24,250/120,000 images · ETA 6 min 10 s");
training adds the epoch.
"""

from __future__ import annotations

from cifar_core.jobs.status import JobInfo
from cifar_core.runs.progress import PHASE_LABELS, describe_count, format_duration, phase_label

__all__ = ["PHASE_LABELS", "describe_progress", "format_duration"]


def _eta(info: JobInfo) -> str:
    if info.eta_seconds is not None:
        return f"ETA {format_duration(info.eta_seconds)}"
    return "ETA not known yet"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_progress(info: JobInfo) -> str:
    """One line: where the job is (queue place, phase, count) and how long is left; for an
    ended job, how it ended ("Stopped at epoch 3 of 40 (2 finished)")."""
    if info.status == "queued":
        if info.alive is False:
            return "queued, not waiting: its process is gone"
        if info.queue_position is None:
            return "queued"
        return "next to train" if info.queue_position == 1 else \
            f"queued: {info.queue_position - 1} job(s) ahead"
    if info.status == "stopped" and info.error:
        return _sentence(info.error)
    if info.status != "running":
        done = f"{info.epochs_done} epoch(s)" if info.epochs_done else "no epoch"
        return f"{info.status} after {done}"
    if info.phase in (None, "starting", "loading data"):
        return phase_label("starting")
    if info.phase == "training":
        parts = []
        if info.epoch and info.epochs:
            parts.append(f"epoch {min(info.epoch, info.epochs)}/{info.epochs}")
        if info.step and info.steps and info.epoch == info.epochs_done + 1:
            parts.append(describe_count(info.step, info.steps, info.unit or "batches"))
        return " · ".join([*parts, _eta(info)])
    parts = [phase_label(info.phase)]
    if info.steps:
        parts += [describe_count(info.step, info.steps, info.unit), _eta(info)]
    elif info.phase in ("evaluating", "saving", "done"):  # recorded without a count
        parts.append(f"training done after {info.epochs_done} epoch(s)")
    return " · ".join(parts)
