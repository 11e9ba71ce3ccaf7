"""Stopping a job or a CLI-started run: SIGTERM to its process group (the training
records where it stopped), SIGKILL after a grace period; a queued job never starts."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from cifar_core.jobs.locks import process_alive
from cifar_core.jobs.records import (
    JobError,
    job_folder,
    mark_final,
    read_job_record,
    read_run_record,
    this_host,
)
from cifar_core.jobs.status import JobInfo, job_history, job_info
from cifar_core.runs.progress import (
    where_stopped,
)
from cifar_core.runs.store import (
    FINAL_STATUSES,
    RUN_FILE,
    parse_iso,
)

STOP_GRACE_SECONDS = 10.0  # SIGTERM first; SIGKILL if the job has not ended by then


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _wait(condition, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stop_job_process(path: Path, grace_seconds: float) -> None:
    if not process_alive(path):
        return
    # The launcher writes the pid right after starting the process: wait for it.
    _wait(lambda: bool((read_job_record(path) or {}).get("pid")) or not process_alive(path), 5.0)
    pid = (read_job_record(path) or {}).get("pid")
    if not pid or not process_alive(path):
        return
    _signal_group(pid, signal.SIGTERM)
    if not _wait(lambda: not process_alive(path), grace_seconds):
        _signal_group(pid, signal.SIGKILL)
        _wait(lambda: not process_alive(path), 10.0)
    # The lock is free once the process has closed its files; let it leave the table too.
    _wait(lambda: _group_gone(pid), 5.0)


def _cli_process(run: dict):
    """The live process of a CLI-started run, or None (checked so a reused pid is never hit)."""
    import psutil

    pid, started = run.get("pid"), parse_iso(run.get("started_at"))
    if not isinstance(pid, int) or run.get("host") not in (None, socket.gethostname()):
        return None
    try:
        process = psutil.Process(pid)
        command = " ".join(process.cmdline())
        created = process.create_time()
    except (psutil.Error, OSError):
        return None
    if "cifar" not in command or (started is not None and created > started + 5):
        return None
    return process


def _stop_cli_run(run: dict, grace_seconds: float) -> None:
    import psutil

    process = _cli_process(run)
    if process is None:
        return
    with contextlib.suppress(psutil.Error):
        process.terminate()
        try:
            process.wait(grace_seconds)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(10)


def stop_job(artifacts, run_id: str, *, grace_seconds: float = STOP_GRACE_SECONDS) -> JobInfo:
    """Stop a job: a queued one never starts; a running one gets SIGTERM on its process group
    (the training marks itself ``stopped``), then SIGKILL after ``grace_seconds``. Either
    way the run ends ``stopped``. Runs started from the CLI get SIGTERM on their process.
    Stopping a job that has already ended changes nothing.
    """
    path = job_folder(artifacts, run_id)
    run = read_run_record(path)
    if run is None:
        raise JobError(f"run {run_id!r}: {RUN_FILE} is unreadable")
    if run.get("status") in FINAL_STATUSES:
        return job_info(artifacts, run_id)
    job = read_job_record(path)
    if job is not None:
        if run.get("status") == "queued":  # it will not start now: "stopped while queued"
            mark_final(path, "stopped", f"stopped {where_stopped(run)}")
        if this_host(job):
            _stop_job_process(path, grace_seconds)
            if process_alive(path):
                raise JobError(f"job {run_id} (pid {job.get('pid')}) did not end after "
                               "SIGKILL")
    else:
        _stop_cli_run(run, grace_seconds)
    # The process wrote `stopped` itself unless it died first (SIGKILL, or during startup):
    # then where it was is read from what it last recorded.
    last = read_run_record(path) or run
    mark_final(path, "stopped", f"stopped {where_stopped(last, len(job_history(path)))}")
    return job_info(artifacts, run_id)
