"""The process of one job: wait for its turn, then train the job's config in its folder.

Started by ``cifar_core.jobs.launch`` as ``python -m cifar_core.jobs.worker <run folder>``,
detached in its own session, holding the folder's ``job.lock`` (handed over already locked)
until it exits. Its turn comes when no older queued job is alive and it can lock the
training slot ``<artifacts>/jobs.lock``; it then runs the pipeline with the config
``job.json`` carries (``cifar_core.jobs.request``) in this same process, so the slot stays
held while it trains and is released by the kernel when the process ends, even by SIGKILL.

Every way out of here leaves the run with a final status, taken from what happened, never
from the log's text: the pipeline records running / completed / failed / stopped once it
adopts the folder; before that (waiting, a job.json this version cannot read, loading
data) this module records ``stopped`` (SIGTERM) or ``failed`` (with the exception's
message). A stop is one plain line in the log ("Stopped by the user while queued", "... at
epoch 3 of 40 (2 finished)"), never a traceback; an unexpected failure keeps its traceback.
Only SIGKILL or a machine restart can leave a queued run behind, and
``recovery.resume_queued_jobs`` relaunches those.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from cifar_core.errors import CifarCoreError, RunStopped
from cifar_core.jobs import summary
from cifar_core.jobs.download import wait_for_download
from cifar_core.jobs.launch import adopt_queued_run
from cifar_core.jobs.locks import process_alive
from cifar_core.jobs.records import (
    JOB_FILE,
    SLOT_LOCK_FILE,
    JobError,
    job_folders,
    job_sort_key,
    read_job_record,
    read_run_record,
)
from cifar_core.jobs.request import JobRequest, read_request
from cifar_core.runs.progress import where_stopped
from cifar_core.runs.store import FINAL_STATUSES, RunWriter, now_iso

POLL_SECONDS = 0.5  # how often a waiting job looks at the queue


class JobStopped(BaseException):  # like KeyboardInterrupt: not an Exception
    """SIGTERM arrived outside the training loop (waiting, starting up, loading data)."""


def _raise_stopped(signum, frame):
    raise JobStopped(f"stopped by signal {signal.Signals(signum).name}")


def log(message: str) -> None:
    print(f"[{now_iso()}] {message}", flush=True)


def _status(path: Path) -> str | None:
    return (read_run_record(path) or {}).get("status")


def _jobs_ahead(path: Path, artifacts: Path) -> list[str]:
    """Queued jobs submitted before this one whose process is alive."""
    mine = job_sort_key(read_job_record(path) or {}, path)
    ahead = []
    for other in job_folders(artifacts):
        if other == path:
            continue
        job = read_job_record(other)
        if job is None or (read_run_record(other) or {}).get("status") != "queued":
            continue
        if job_sort_key(job, other) < mine and process_alive(other):
            ahead.append(other.name)
    return ahead


def wait_for_turn(path: Path, artifacts: Path) -> int | None:
    """Block until this job may train; return the locked slot's fd (None: it was stopped)."""
    slot = os.open(artifacts / SLOT_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o666)
    said = None
    while True:
        if _status(path) != "queued":
            os.close(slot)
            return None
        ahead = _jobs_ahead(path, artifacts)
        if not ahead:
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                pass
        message = (f"waiting: {len(ahead)} job(s) ahead ({', '.join(ahead)})" if ahead
                   else "waiting for the running training to finish")
        if message != said:
            log(message)
            said = message
        time.sleep(POLL_SECONDS)


def _set_queue_fields(path: Path, **fields) -> None:
    """Note when the job held the training slot in run.json (``queue``), and the phase
    ``starting`` while the CLI loads (it marks the run running once it has adopted it)."""
    writer = RunWriter(path)
    writer.record["queue"] = {**(writer.record.get("queue") or {}), **fields}
    if "slot_acquired_ts" in fields and writer.record.get("status") == "queued":
        writer.record["progress"] = {**(writer.record.get("progress") or {}),
                                     "phase": "starting"}
    writer.flush()


def _finish(path: Path, status: str, error: str) -> None:
    writer = RunWriter(path)
    if writer.record.get("status") not in FINAL_STATUSES:
        writer.set_status(status, error=error)


def _data_arrived(path: Path, artifacts: Path) -> bool:
    """Wait for the CIFAR-100 download the job was queued behind; False (and the run
    ``stopped``, saying why) when it failed: the download's record holds its error."""
    info = wait_for_download(artifacts, on_wait=lambda _: log(
        "waiting for the CIFAR-100 download to finish"))
    if info is not None and info.status == "failed":
        _finish(path, "stopped", "not started: the CIFAR-100 download it waited for failed "
                                 "(its error is on the Overview page)")
        log(f"job {path.name}: not started, the CIFAR-100 download failed")
        return False
    return True


def _train(path: Path, artifacts: Path, request: JobRequest) -> None:
    """Train the job's config into its queued folder, as ``cifar-core train`` would."""
    from cifar_core.pipeline import execute_run  # TensorFlow: only once it trains

    writer = adopt_queued_run(path, artifacts)
    writer = execute_run(request.config, data=request.data, artifacts=str(artifacts),
                         writer=writer, log=log)
    headline = summary.headline_metrics(writer.path)
    if headline:
        log(f"job {path.name}: {summary.describe_metrics(headline)}")


def run_job(path: Path) -> int:
    """Wait for the slot, train the job's config, make sure the run ends with a final status.

    Exit status: 0 completed (or nothing to do), 1 failed, 128 + SIGTERM stopped.
    """
    signal.signal(signal.SIGTERM, _raise_stopped)
    path = Path(path).resolve()
    artifacts = path.parent.parent
    slot = None
    try:
        job = read_job_record(path)
        if job is None:
            raise JobError(f"{path / JOB_FILE}: missing or unreadable")
        if _status(path) != "queued":
            log(f"run {path.name} is {_status(path)}, not queued: nothing to do")
            return 0
        request = read_request(job)  # a record this version cannot read fails here, clearly
        log(f"job {path.name} queued: model {request.config.model}, "
            f"{summary.describe_labels(request.config.labels)}, "
            f"{summary.describe_settings(request.config.profile, request.overrides)}")
        if job.get("after_download") and not _data_arrived(path, artifacts):
            return 0
        slot = wait_for_turn(path, artifacts)
        if slot is None:
            log(f"job {path.name} was {_status(path)} before it started")
            return 0
        _set_queue_fields(path, slot_acquired_ts=time.time(), worker_pid=os.getpid())
        log(f"job {path.name}: starting (holding the training slot)")
        _train(path, artifacts, request)
        log(f"job {path.name}: finished ({_status(path)})")
        return 0
    except JobStopped:  # before the training adopted the run: waiting, or starting up
        where = where_stopped(read_run_record(path))
        _finish(path, "stopped", f"stopped {where}")
        log(f"Stopped by the user {where}")
        return 128 + signal.SIGTERM
    except RunStopped as exc:  # the training recorded where it stopped; its plain line
        log(str(exc))
        return 128 + signal.SIGTERM
    except CifarCoreError as exc:  # a refusal with its reason: the message is the record
        _finish(path, "failed", str(exc))  # unless the pipeline recorded it already
        log(f"error: {exc}")
        log(f"job {path.name}: {_status(path)}")
        return 1
    except Exception as exc:  # a bug or an odd file: the traceback helps, and run.json says
        traceback.print_exc()
        _finish(path, "failed", f"{type(exc).__name__}: {exc}")  # unless already final
        status = _status(path)  # `stopped` when the training itself caught SIGTERM
        log(f"job {path.name}: {status}")
        return 128 + signal.SIGTERM if status == "stopped" else 1
    finally:
        if slot is not None:
            _set_queue_fields(path, slot_released_ts=time.time())
            os.close(slot)  # the next job may start now


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m cifar_core.jobs.worker RUN_FOLDER", file=sys.stderr)
        return 2
    return run_job(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
