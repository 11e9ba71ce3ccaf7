"""Training jobs: each one its own OS process running the CLI, queued one at a time.

A job trains into a run folder claimed when it is submitted (status ``queued``). Next to the
usual run files (``cifar_core.runs.store``) the folder holds:

================  ==========================================================================
``job.json``      what to run (the validated training config and its data, and the request
                  it came from: ``cifar_core.jobs.request``), when it was submitted, which
                  process runs it (pid = its process group), how often it was launched
``job.lock``      locked (``flock``) by the job's process for its whole life
``log.txt``       the process's stdout and stderr
================  ==========================================================================

and ``<artifacts>/jobs.lock`` is the one training slot: the job that trains holds it.
``<artifacts>/progression.lock`` is held while ``submit_progression`` looks for a queued copy
of the progression and queues it, so that it is queued once however many ask at once.

Why ``flock``: the kernel drops a lock when the process holding it dies, however it dies
(SIGKILL, out of memory, a machine restart). A killed job never blocks the queue, and "is
this job's process alive?" is answered by trying its ``job.lock`` instead of trusting a pid,
which another process may have reused after a restart. The launcher locks ``job.lock`` before
starting the process and hands the locked file to it, so a job is never seen dead while it
starts.

Lifecycle: ``submit_job`` claims the folder, writes ``job.json`` and starts
``python -m cifar_core.jobs.worker <folder>`` detached in its own session. The worker waits
until no older queued job is alive and the slot is free, then runs the pipeline with the
job's config in that folder, which marks the run running / completed / failed / stopped.
``stop_job`` ends the process group (SIGTERM, then SIGKILL). ``resume_queued_jobs`` (called
when the app starts) relaunches queued jobs whose process is gone, e.g. after a restart, and
records running jobs whose process is gone as failed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cifar_core import settings
from cifar_core.errors import CifarCoreError, RunFolderError
from cifar_core.jobs.request import (
    REQUEST_SCHEMA_VERSION,
    JobRequest,
    build_request,
    requested_settings,
)
from cifar_core.runs.files import atomic_write_json, read_json
from cifar_core.runs.progress import (
    phase_counts,
    phase_eta,
    phase_fraction,
    phase_rate,
    where_stopped,
)
from cifar_core.runs.store import (
    FINAL_STATUSES,
    LOG_FILE,
    RUN_FILE,
    RUN_ID_PATTERN,
    RunWriter,
    effective_status,
    now_iso,
    parse_iso,
    read_history,
    run_path,
    runs_root,
)

JOB_SCHEMA_VERSION = REQUEST_SCHEMA_VERSION  # 2: the config; 1 (older jobs): CLI arguments
JOB_FILE = "job.json"
JOB_LOCK_FILE = "job.lock"
SLOT_LOCK_FILE = "jobs.lock"  # in the artifacts root: held by the job that trains
WORKER_MODULE = "cifar_core.jobs.worker"
STOP_GRACE_SECONDS = 10.0  # SIGTERM first; SIGKILL if the job has not ended by then
MAX_LAUNCHES = 3  # a job whose process keeps dying before it runs is given up, not looped
LOG_TAIL_MAX_BYTES = 256 * 1024

PROGRESSION_LOCK_FILE = "progression.lock"  # in the artifacts root: one progression check

_INTERRUPTED = ("interrupted: the job's process ended without finishing (killed, out of "
                "memory, or the machine restarted); see log.txt")


class JobError(CifarCoreError):
    """A job could not be submitted, found or stopped; the message says why."""


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


# ----------------------------------------------------------------------------- paths, files


def _artifacts(artifacts) -> Path:
    return settings.artifacts_dir(artifacts)


def _job_folder(artifacts, run_id: str) -> Path:
    """The run folder of ``run_id``, validated to lie inside the artifacts root."""
    path = run_path(runs_root(artifacts), run_id)
    if not (path / RUN_FILE).is_file():
        raise JobError(f"no run {run_id!r} under {runs_root(artifacts)}")
    return path


def _read_json_or_none(file: Path) -> dict | None:
    try:
        data = read_json(file)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_job_record(path: Path) -> dict | None:
    return _read_json_or_none(path / JOB_FILE)


def _write_job(path: Path, job: dict) -> None:
    """Only the holder of the job's ``job.lock`` writes ``job.json`` (the launcher)."""
    atomic_write_json(path / JOB_FILE, job)


def read_run_record(path: Path) -> dict | None:
    return _read_json_or_none(path / RUN_FILE)


def job_sort_key(job: dict, path: Path) -> tuple[float, str]:
    """Queue order: first submitted, first trained (the run id breaks ties)."""
    submitted = job.get("submitted_ts")
    if not isinstance(submitted, (int, float)):
        submitted = parse_iso(job.get("submitted_at")) or 0.0
    return float(submitted), path.name


def job_folders(artifacts) -> list[Path]:
    root = runs_root(artifacts)
    if not root.is_dir():
        return []
    return sorted(entry for entry in root.iterdir()
                  if RUN_ID_PATTERN.match(entry.name) and not entry.is_symlink()
                  and entry.is_dir())


# --------------------------------------------------------------------------------- liveness


def process_alive(path: Path) -> bool:
    """Whether the job process of run folder ``path`` is alive: it holds ``job.lock``.

    A shared, non-blocking probe: two probes never disturb each other, and a probe never
    waits. A missing lock file means no job process was ever started there.
    """
    try:
        fd = os.open(path / JOB_LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own lock, if it got one
    return False


def _this_host(job: dict) -> bool:
    return job.get("host") in (None, socket.gethostname())


def _lock_job_file(path: Path) -> int | None:
    """Take ``job.lock`` exclusively (without waiting); None if a live process holds it."""
    fd = os.open(path / JOB_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# ------------------------------------------------------------------------------- launching


def _launch(path: Path, job: dict, lock_fd: int) -> dict:
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
    _write_job(path, job)  # never leave the previous launch's pid while this one starts
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
    _write_job(path, job)
    return job


def _mark_final(path: Path, status: str, error: str) -> None:
    """Record a final status for a run whose process is gone (or never started)."""
    writer = RunWriter(path)
    if writer.record.get("status") in FINAL_STATUSES:
        return
    writer.set_status(status, error=error)


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
    return _queue_job(_artifacts(artifacts), request)


def _prepare_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / SLOT_LOCK_FILE).touch(exist_ok=True)
    except OSError as exc:
        raise JobError(f"cannot write to the artifacts folder {root}: {exc.strerror}") from None


def _queue_job(root: Path, request: JobRequest, extra: dict | None = None) -> str:
    """Claim a queued run folder for a checked ``request``, write ``job.json`` (with the
    fields of ``extra``) and start the job's process; return the run id."""
    _prepare_root(root)
    writer = RunWriter.create(root, request.run_prefix, status="queued")
    path = writer.path
    lock_fd = None
    try:
        lock_fd = _lock_job_file(path)
        assert lock_fd is not None, "a freshly claimed folder cannot be locked by anyone else"
        submitted = time.time()
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
        _launch(path, job, lock_fd)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            _mark_final(path, "failed", f"the job could not be started: {exc}")
        raise JobError(f"could not start the job in {path}: {exc}") from None
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # the job's process holds its own copy of the lock
    return path.name


def _models_in_words(models: list[int]) -> str:
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
            return (f"The {self.profile} progression ({_models_in_words(self.models)}) is "
                    f"already queued or running: run{'s' if len(self.run_ids) > 1 else ''} "
                    f"{runs}. Nothing new was queued.")
        return (f"Queued {len(self.run_ids)} training job{'s' if len(self.run_ids) > 1 else ''}"
                f" ({_models_in_words(self.models)}, {self.profile} profile): {runs}.")


@contextlib.contextmanager
def _progression_lock(root: Path):
    """Hold ``<artifacts>/progression.lock``: one progression check-and-submit at a time,
    across the app's threads and processes (``flock`` locks each open of the file)."""
    _prepare_root(root)
    try:
        fd = os.open(root / PROGRESSION_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise JobError(f"cannot write to the artifacts folder {root}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another submission takes a second or two at most
        yield
    finally:
        os.close(fd)


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
    root = _artifacts(artifacts)
    models = list(models)
    plan = [build_request(model=number, labels=labels, profile=profile, data=data,
                          backbone_weights=backbone_weights) for number in models]
    # The same configs and data (paths resolved to absolute ones) mean the same jobs.
    key = hashlib.sha256(json.dumps([request.to_json() for request in plan],
                                    sort_keys=True).encode()).hexdigest()
    with _progression_lock(root):
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


# --------------------------------------------------------------------------------- reading


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
            status, error = "failed", _INTERRUPTED
        elif status == "queued" and not alive:
            note = ("not waiting: its process is gone (killed, or the machine restarted); "
                    "it is relaunched when the app starts (resume_queued_jobs)")
        elif status == "queued" and _progress(run, status, [])["phase"] == "starting":
            status = "running"  # it holds the slot and is loading; the CLI marks it running
    history = job_history(path) if status != "queued" else []
    request = requested_settings(job) if job is not None else {}
    config = _read_json_or_none(path / "config.json") if job is None else None
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
    path = _job_folder(artifacts, run_id)
    run = read_run_record(path)
    if run is None:
        raise JobError(f"run {run_id!r}: {RUN_FILE} is unreadable")
    job = read_job_record(path)
    alive = process_alive(path) if job is not None and _this_host(job) else None
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
        alive = process_alive(path) if job is not None and _this_host(job) else None
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


# TensorFlow's C++ start-up chatter: absl/glog lines ("I0000 00:00:1764625000.123456  12345
# port.cc:153] oneDNN custom operations are on...") and the line after the CPU-feature notice.
# Harmless, but some are tagged E ("oneDNN supports DT_HALF only on platforms with AVX-512",
# "failed call to cuInit" without a GPU) and read like errors in a log tail. Info and warning
# lines are left out, error lines only where they are known start-up noise: any other E or
# F (fatal) line is a real error and stays.
_NATIVE_LOG_LINE = re.compile(r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
                              r"[\w./-]+:\d+\] (?P<message>.*)$")
_NATIVE_ERROR_NOISE = re.compile(
    r"oneDNN supports DT_\w+ only on platforms with|failed call to cuInit|"
    r"Unable to register cu\w+ factory|[Cc]omputation placer already registered|"
    r"[Cc]ould not find cuda drivers|TF-TRT Warning|"
    r"NodeDef mentions attribute \w+ which is not in the op definition")  # ignored attrs
_NATIVE_LOG_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called",
    "To enable the following instructions:",  # follows "This TensorFlow binary is optimized"
)


def is_log_noise(line: str) -> bool:
    """Whether a log line is TensorFlow's native start-up chatter, not a real error."""
    native = _NATIVE_LOG_LINE.match(line)
    if native:
        return native["level"] in "IW" or (
            native["level"] == "E" and bool(_NATIVE_ERROR_NOISE.search(native["message"])))
    return line.startswith(_NATIVE_LOG_NOISE)


def read_log_tail(artifacts, run_id: str, lines: int = 40, *, raw: bool = False) -> str:
    """The last ``lines`` lines of the job's log.txt ("" when there is none yet).

    Unless ``raw``, TensorFlow's native start-up chatter is left out (``is_log_noise``);
    real errors stay.
    """
    path = _job_folder(artifacts, run_id) / LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_MAX_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    # Progress bars redraw with '\r': keep only the last state of each line.
    rows = [row.rsplit("\r", 1)[-1] for row in text.split("\n")]
    if rows and rows[-1] == "":
        rows.pop()
    if not raw:
        rows = [row for row in rows if not is_log_noise(row)]
    return "\n".join(rows[-lines:]) if lines > 0 else ""


# -------------------------------------------------------------------------------- stopping


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
    path = _job_folder(artifacts, run_id)
    run = read_run_record(path)
    if run is None:
        raise JobError(f"run {run_id!r}: {RUN_FILE} is unreadable")
    if run.get("status") in FINAL_STATUSES:
        return job_info(artifacts, run_id)
    job = read_job_record(path)
    if job is not None:
        if run.get("status") == "queued":  # it will not start now: "stopped while queued"
            _mark_final(path, "stopped", f"stopped {where_stopped(run)}")
        if _this_host(job):
            _stop_job_process(path, grace_seconds)
            if process_alive(path):
                raise JobError(f"job {run_id} (pid {job.get('pid')}) did not end after "
                               "SIGKILL")
    else:
        _stop_cli_run(run, grace_seconds)
    # The process wrote `stopped` itself unless it died first (SIGKILL, or during startup):
    # then where it was is read from what it last recorded.
    last = read_run_record(path) or run
    _mark_final(path, "stopped", f"stopped {where_stopped(last, len(job_history(path)))}")
    return job_info(artifacts, run_id)


# -------------------------------------------------------------------------------- resuming


def resume_queued_jobs(artifacts=None) -> list[str]:
    """Relaunch queued jobs whose process is gone; record dead running jobs as failed.

    Call it when the app starts (it is cheap and safe to call on every page view): after a
    machine restart, queued jobs start again in their original order; a job that was
    training when the machine went down is marked failed (interrupted). Jobs of another
    host (a copied folder) are left alone. A job whose process died before running
    ``MAX_LAUNCHES`` times is marked failed instead of being relaunched again. Returns the
    relaunched run ids.
    """
    relaunched = []
    waiting = []
    for path in job_folders(artifacts):
        job = read_job_record(path)
        run = read_run_record(path)
        if job is None or run is None or not _this_host(job):
            continue
        if run.get("status") in ("queued", "running"):
            waiting.append((job_sort_key(job, path), path))
    for _, path in sorted(waiting):
        lock_fd = _lock_job_file(path)
        if lock_fd is None:
            continue  # its process is alive (or another app instance is relaunching it)
        try:
            run, job = read_run_record(path) or {}, read_job_record(path) or {}
            if run.get("status") == "running":
                _mark_final(path, "failed", _INTERRUPTED)
            elif run.get("status") == "queued":
                if len(job.get("launches", [])) >= MAX_LAUNCHES:
                    _mark_final(path, "failed", f"the job's process ended before training "
                                f"{MAX_LAUNCHES} times; see log.txt")
                else:
                    _launch(path, job, lock_fd)
                    relaunched.append(path.name)
        finally:
            os.close(lock_fd)
    return relaunched


__all__ = [
    "JobError",
    "JobInfo",
    "QueuedProgression",
    "job_history",
    "job_info",
    "list_jobs",
    "process_alive",
    "read_log_tail",
    "resume_queued_jobs",
    "stop_job",
    "submit_job",
    "submit_progression",
]


@contextlib.contextmanager
def training_slot(artifacts=None, *, on_wait=None):
    """Hold the one training slot for a training started outside the queue (the CLI).

    Jobs take ``<artifacts>/jobs.lock`` in their worker; a ``cifar-core train`` typed in a
    terminal takes it here, so the CLI and the app never train at the same time on 2 cores.
    ``on_wait`` is called once if the slot is busy, before blocking.
    """
    root = _artifacts(artifacts)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / SLOT_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise RunFolderError(f"cannot create the runs folder under {root}: "
                             f"{exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
