"""A job as the dashboard shows it (``JobInfo``): its status (a dead process's job reads
as failed at once), its place in the queue, its phase, count, fraction and ETA."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from cifar_core.jobs.locks import process_alive
from cifar_core.jobs.records import (
    JobError,
    job_folder,
    job_folders,
    job_sort_key,
    read_job_record,
    read_json_or_none,
    read_run_record,
    this_host,
)
from cifar_core.jobs.request import (
    requested_settings,
)
from cifar_core.runs.progress import (
    phase_counts,
    phase_eta,
    phase_fraction,
    phase_rate,
)
from cifar_core.runs.store import (
    RUN_FILE,
    effective_status,
    read_history,
)

INTERRUPTED = ("interrupted: the job's process ended without finishing (killed, out of "
                "memory, or the machine restarted); see log.txt")


@dataclass(frozen=True)
class JobInfo:
    """One job (or CLI-started run) as the dashboard shows it.

    ``status`` is what to show: a job whose process is gone while it was running reads as
    ``failed`` at once (its lock is free), without waiting for its heartbeat to go stale.
    ``epoch`` is the epoch in progress (1-based), ``epochs_done`` those finished.
    """

    run_id: str
    path: Path
    status: str
    model: int | None = None
    labels: str | None = None
    profile: str | None = None
    is_job: bool = True  # False: a run started from the command line, not through the queue
    alive: bool | None = None  # its process is alive; None where that cannot be told
    queue_position: int | None = None  # 1 = next to train; None when not waiting
    phase: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    epochs_done: int = 0
    step: float | None = None  # the phase's count: done of ``steps`` (``unit``)
    steps: float | None = None
    unit: str | None = None  # "batches", "images", "trials" (cifar_core.runs.progress)
    eta_seconds: float | None = None
    fraction: float = 0.0  # of the phase in progress (training: of all its epochs), 0..1
    pid: int | None = None
    error: str | None = None
    note: str | None = None  # e.g. why a queued job is not waiting
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    # What was asked: model, labels, profile and the overrides ({"epochs": 3}); {} for a run
    # started from the CLI or a job.json this version cannot read.
    request: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


def job_history(path: Path) -> list[dict]:
    """The run's ``history.csv`` rows; [] when absent or unreadable (never raises)."""
    try:
        return read_history(path)
    except (OSError, ValueError, csv.Error, UnicodeDecodeError):
        return []


def _progress(run: dict, status: str, history: list[dict], now: float | None = None) -> dict:
    """Phase, its count, fraction done and ETA from run.json's progress and history.csv.

    Training counts epochs: its fraction and ETA are of all its epochs, from their times in
    history.csv (in the first epoch, from its batches' rate). Any other phase with a count
    (``cifar_core.runs.progress``: the feature pass, a search stage, the test set) is shown
    on its own: the fraction of it done and the ETA at its rate so far.
    """
    progress = run.get("progress") if isinstance(run.get("progress"), dict) else {}
    phase = progress.get("phase")
    epochs = progress.get("epochs") if isinstance(progress.get("epochs"), int) else None
    last = progress.get("last") if isinstance(progress.get("last"), dict) else {}
    done = last.get("epoch") if isinstance(last.get("epoch"), (int, float)) else 0
    if history and isinstance(history[-1].get("epoch"), (int, float)):
        done = max(done, history[-1]["epoch"])
    done = int(done)
    epoch = progress.get("epoch") if isinstance(progress.get("epoch"), int) else None
    step, steps = phase_counts(progress)
    unit = progress.get("unit") if isinstance(progress.get("unit"), str) else None
    running = status == "running"
    inner = 0.0  # of the epoch in progress
    if phase == "training" and epoch == done + 1 and step is not None:
        inner = min(step / steps, 1.0)
    fraction, eta = 0.0, None
    if status == "completed" or phase in ("saving", "done"):
        fraction = 1.0
    elif phase != "training" and step is not None:
        fraction = phase_fraction(progress)
        eta = phase_eta(progress, now) if running else None
    elif phase == "evaluating":  # recorded before the test set had a count
        fraction = 1.0
    elif epochs:
        fraction = min((done + inner) / epochs, 1.0)
        seconds = [row["seconds"] for row in history
                   if isinstance(row.get("seconds"), float) and row["seconds"] > 0]
        rate = phase_rate(progress) if phase == "training" and inner else None
        if not running:
            eta = None
        elif seconds:
            eta = sum(seconds) / len(seconds) * max(epochs - done - inner, 0.0)
        elif rate:  # the first epoch: the rest of it, then as many more at its pace
            eta = phase_eta(progress, now) + steps / rate * max(epochs - done - 1, 0)
        elif isinstance(progress.get("eta_seconds"), (int, float)):
            eta = float(progress["eta_seconds"])
    return {"phase": phase, "epoch": epoch, "epochs": epochs, "epochs_done": done,
            "step": step, "steps": steps, "unit": unit, "fraction": fraction,
            "eta_seconds": eta}


def _describe(path: Path, run: dict, job: dict | None, alive: bool | None) -> JobInfo:
    status, error = effective_status(run)
    note = None
    if job is not None and alive is None and status == "queued":
        note = (f"submitted on host {job.get('host')!r}, not this machine: it does not run "
                "here; stop it and submit it again")
    if job is not None and alive is not None and status in ("queued", "running"):
        if status == "running" and not alive:
            status, error = "failed", INTERRUPTED
        elif status == "queued" and not alive:
            note = ("not waiting: its process is gone (killed, or the machine restarted); "
                    "it is relaunched when the app starts (resume_queued_jobs)")
        elif status == "queued" and _progress(run, status, [])["phase"] == "starting":
            status = "running"  # it holds the slot and is loading; the CLI marks it running
    history = job_history(path) if status != "queued" else []
    request = requested_settings(job) if job is not None else {}
    config = read_json_or_none(path / "config.json") if job is None else None
    if config:
        request = {"model": (config.get("model") or {}).get("number"),
                   "labels": config.get("labels"), "profile": config.get("profile")}
    return JobInfo(
        run_id=path.name, path=path, status=status, is_job=job is not None, alive=alive,
        model=request.get("model"), labels=request.get("labels"),
        profile=request.get("profile"), pid=(job or {}).get("pid") or run.get("pid"),
        error=error if status in ("failed", "stopped") else None, note=note,
        submitted_at=(job or {}).get("submitted_at") or run.get("created_at"),
        started_at=run.get("started_at"), ended_at=run.get("ended_at"),
        request=request,
        **_progress(run, status, history))


def job_info(artifacts, run_id: str) -> JobInfo:
    """The job (or run) ``run_id`` as the dashboard shows it."""
    path = job_folder(artifacts, run_id)
    run = read_run_record(path)
    if run is None:
        raise JobError(f"run {run_id!r}: {RUN_FILE} is unreadable")
    job = read_job_record(path)
    alive = process_alive(path) if job is not None and this_host(job) else None
    info = _describe(path, run, job, alive)
    if info.status == "queued" and info.alive:  # its place in the queue needs the others
        for other in list_jobs(artifacts):
            if other.run_id == run_id:
                return other
    return info


def list_jobs(artifacts=None, *, include_finished: bool = False) -> list[JobInfo]:
    """Jobs in queue order: running first, then queued (with positions); runs started from
    the CLI that are running appear too. ``include_finished`` adds ended jobs, newest first.
    """
    active, waiting, finished = [], [], []
    for path in job_folders(artifacts):
        run = read_run_record(path)
        if run is None or not isinstance(run, dict):
            continue
        job = read_job_record(path)
        if job is None and run.get("status") not in ("queued", "running"):
            continue  # a finished run from the CLI: the Overview page lists those
        alive = process_alive(path) if job is not None and this_host(job) else None
        info = _describe(path, run, job, alive)
        if info.status == "queued":
            waiting.append((job_sort_key(job or {}, path), info))
        elif info.status == "running":
            active.append(info)
        elif include_finished and job is not None:
            finished.append(info)
    position = 0
    queued = []
    for _, info in sorted(waiting, key=lambda pair: pair[0]):
        if not info.alive:  # gone, or on another host: not waiting in this queue
            queued.append(info)
            continue
        position += 1
        queued.append(replace(info, queue_position=position))
    active.sort(key=lambda info: info.started_at or info.submitted_at or "")
    # Newest first; times are to the second, and run ids (which sort by creation) break ties.
    finished.sort(key=lambda info: (info.ended_at or info.submitted_at or "", info.run_id),
                  reverse=True)
    return active + queued + finished
