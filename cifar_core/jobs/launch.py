"""Submitting jobs: claim a queued run folder for a checked request, write ``job.json``
and start the job's worker process detached; the quick progression queued once; the
worker's adoption of its folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_core.errors import RunFolderError
from cifar_core.jobs.download import download_info
from cifar_core.jobs.locks import lock_job_file, prepare_root, progression_lock
from cifar_core.jobs.records import (
    JOB_SCHEMA_VERSION,
    JobError,
    artifacts_root,
    job_folders,
    mark_final,
    read_job_record,
    read_run_record,
    write_job_record,
)
from cifar_core.jobs.request import (
    JobRequest,
    build_request,
)
from cifar_core.jobs.status import list_jobs
from cifar_core.runs.store import (
    LOG_FILE,
    RUN_FILE,
    RunWriter,
    now_iso,
    run_path,
    runs_root,
)

WORKER_MODULE = "cifar_core.jobs.worker"


def start_worker(path: Path, job: dict, lock_fd: int) -> dict:
    """Start the worker for ``path``, handing it ``lock_fd`` (locked by us); update job.json.

    The process gets its own session (so its process group can be signalled as a whole and
    it survives the app), stdin from /dev/null, and stdout + stderr appended to log.txt.
    TensorFlow's native info and warning lines are silenced at the source
    (``TF_CPP_MIN_LOG_LEVEL=2``, unless the app's environment sets a level); its errors
    still reach the log.
    """
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", WORKER_MODULE, str(path)]
    job = {**job, "pid": None}
    write_job_record(path, job)  # never leave the previous launch's pid while this one starts
    with open(path / LOG_FILE, "ab") as log:
        log.write(f"[{now_iso()}] job {path.name}: launching (attempt "
                  f"{len(job.get('launches', [])) + 1})\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   pass_fds=(lock_fd,), env=env, close_fds=True)
    # Reap it when it ends, so a finished job leaves no zombie behind in a long-lived app.
    threading.Thread(target=process.wait, name=f"job-reaper-{process.pid}",
                     daemon=True).start()
    job = {**job, "pid": process.pid, "worker_command": command,
           "launches": [*job.get("launches", []), {"pid": process.pid, "at": now_iso()}]}
    write_job_record(path, job)
    return job


def submit_job(artifacts=None, *, model: int, labels: str = "fine", profile: str = "quick",
               data: str | None = None, overrides: dict | None = None,
               backbone_weights: str | None = None) -> str:
    """Queue one training job and start its process; return its run id.

    ``overrides`` may set ``cifar_core.jobs.request.JOB_OVERRIDES`` (epochs, batch size,
    patience, learning rate, seed, freeze_base and model 7's search settings); None values
    are ignored. Everything is checked before the run folder is claimed.
    """
    request = build_request(model=model, labels=labels, profile=profile, data=data,
                            overrides=overrides, backbone_weights=backbone_weights)
    return _queue_job(artifacts_root(artifacts), request)


def _queue_job(root: Path, request: JobRequest, extra: dict | None = None) -> str:
    """Claim a queued run folder for a checked ``request``, write ``job.json`` (with the
    fields of ``extra``) and start the job's process; return the run id."""
    prepare_root(root)
    writer = RunWriter.create(root, request.run_prefix, status="queued")
    path = writer.path
    lock_fd = None
    try:
        lock_fd = lock_job_file(path)
        assert lock_fd is not None, "a freshly claimed folder cannot be locked by anyone else"
        submitted = time.time()
        if request.uses_cifar100 and (download := download_info(root)) and download.active:
            extra = {**(extra or {}), "after_download": True}  # trains once the data is here
        job = {
            "schema_version": JOB_SCHEMA_VERSION,
            "run_id": path.name,
            **request.to_json(),
            "submitted_at": now_iso(),
            "submitted_ts": submitted,
            "host": socket.gethostname(),
            "pid": None,
            "launches": [],
            **(extra or {}),
        }
        start_worker(path, job, lock_fd)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            mark_final(path, "failed", f"the job could not be started: {exc}")
        raise JobError(f"could not start the job in {path}: {exc}") from None
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # the job's process holds its own copy of the lock
    return path.name


def models_in_words(models: list[int]) -> str:
    """``[1, 2, 3]`` -> ``"models 1-3"``; ``[1, 5]`` -> ``"models 1, 5"``; ``[2]`` ->
    ``"model 2"``."""
    if len(models) == 1:
        return f"model {models[0]}"
    if len(models) > 2 and models == list(range(models[0], models[0] + len(models))):
        return f"models {models[0]}-{models[-1]}"
    return "models " + ", ".join(map(str, models))


@dataclass(frozen=True)
class QueuedProgression:
    """What ``submit_progression`` did.

    ``already_queued``: the same progression had jobs queued or running, so nothing new was
    queued and ``run_ids`` are those jobs (in queue order); otherwise ``run_ids`` are the jobs
    queued now, one per model.
    """

    run_ids: list[str]
    models: list[int]
    profile: str
    already_queued: bool = False

    @property
    def message(self) -> str:
        """What to tell the person who asked for it."""
        runs = ", ".join(self.run_ids)
        if self.already_queued:
            return (f"The {self.profile} progression ({models_in_words(self.models)}) is "
                    f"already queued or running: run{'s' if len(self.run_ids) > 1 else ''} "
                    f"{runs}. Nothing new was queued.")
        return (f"Queued {len(self.run_ids)} training job{'s' if len(self.run_ids) > 1 else ''}"
                f" ({models_in_words(self.models)}, {self.profile} profile): {runs}.")


def _active_progression(root: Path, key: str) -> list[str]:
    """The queued or running jobs of the progression ``key``, in queue order."""
    marked = {path.name for path in job_folders(root)
              if ((read_job_record(path) or {}).get("progression") or {}).get("key") == key}
    if not marked:
        return []
    return [job.run_id for job in list_jobs(root) if job.run_id in marked and job.active]


def submit_progression(artifacts=None, models=range(1, 6), profile: str = "quick",
                       data: str | None = None, backbone_weights: str | None = None, *,
                       labels: str = "fine") -> QueuedProgression:
    """Queue one job per model, in order (the first-launch "quick progression"), once.

    Every job is checked before any is queued. While a progression of the same models,
    labels, profile, data and weights has a job queued or running, asking again queues
    nothing and returns those jobs (``already_queued``): a second click, or a click in
    another tab, does not train the models twice. A finished, failed or stopped progression
    does not count. The check and the submission hold ``progression.lock``, so two requests
    at once (two server threads) still queue it once.
    """
    root = artifacts_root(artifacts)
    models = list(models)
    plan = [build_request(model=number, labels=labels, profile=profile, data=data,
                          backbone_weights=backbone_weights) for number in models]
    # The same configs and data (paths resolved to absolute ones) mean the same jobs.
    key = hashlib.sha256(json.dumps([request.to_json() for request in plan],
                                    sort_keys=True).encode()).hexdigest()
    with progression_lock(root):
        active = _active_progression(root, key)
        if active:
            return QueuedProgression(active, models, profile, already_queued=True)
        marker = {"progression": {"key": key, "models": models, "labels": labels,
                                  "profile": profile}}
        run_ids = [_queue_job(root, request, marker) for request in plan]
    return QueuedProgression(run_ids, models, profile)


def adopt_queued_run(run_dir, artifacts=None) -> RunWriter:
    """The writer of a job's queued run folder, for its worker to train into.

    Refuses a folder outside ``<artifacts>/runs``, a link, a folder without ``run.json``, and
    a run that is no longer queued (stopped meanwhile, or already run).
    """
    given = Path(run_dir).expanduser()
    root = runs_root(artifacts)
    path = run_path(root, given.name)
    if given.is_symlink() or not given.is_dir() or given.resolve() != path.resolve():
        raise RunFolderError(f"{run_dir}: not a run folder under {root}")
    run = read_run_record(path)
    if run is None:
        raise RunFolderError(f"{run_dir}: no readable {RUN_FILE}")
    if run.get("status") != "queued":
        raise RunFolderError(f"{run_dir}: the run is {run.get('status')}, not queued; "
                             "nothing to train")
    return RunWriter(path)
