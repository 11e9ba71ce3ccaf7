"""Liveness and locks (``flock``): a job is alive while its process holds ``job.lock``;
``<artifacts>/jobs.lock`` is the one training slot; ``progression.lock`` makes a
progression's check-and-submit one at a time. The kernel drops a lock when its process
dies, however it dies, so a dead job never blocks anything."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from cifar_core.errors import RunFolderError
from cifar_core.jobs.records import (
    JOB_LOCK_FILE,
    PROGRESSION_LOCK_FILE,
    SLOT_LOCK_FILE,
    JobError,
    artifacts_root,
)


def lock_held(lock_file: Path) -> bool:
    """Whether a live process holds ``lock_file`` (a job's ``job.lock``, a download's).

    A shared, non-blocking probe: two probes never disturb each other, and a probe never
    waits. A missing lock file means no process was ever started there.
    """
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own lock, if it got one
    return False


def try_lock(lock_file: Path) -> int | None:
    """Take ``lock_file`` exclusively without waiting (created if missing): its open fd, or
    None when a live process holds it."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def process_alive(path: Path) -> bool:
    """Whether the job process of run folder ``path`` is alive: it holds ``job.lock``."""
    return lock_held(path / JOB_LOCK_FILE)


def lock_job_file(path: Path) -> int | None:
    """Take ``job.lock`` exclusively (without waiting); None if a live process holds it."""
    return try_lock(path / JOB_LOCK_FILE)


def prepare_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / SLOT_LOCK_FILE).touch(exist_ok=True)
    except OSError as exc:
        raise JobError(f"cannot write to the artifacts folder {root}: {exc.strerror}") from None


@contextlib.contextmanager
def progression_lock(root: Path):
    """Hold ``<artifacts>/progression.lock``: one progression check-and-submit at a time,
    across the app's threads and processes (``flock`` locks each open of the file)."""
    prepare_root(root)
    try:
        fd = os.open(root / PROGRESSION_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise JobError(f"cannot write to the artifacts folder {root}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another submission takes a second or two at most
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def training_slot(artifacts=None, *, on_wait=None):
    """Hold the one training slot for a training started outside the queue (the CLI).

    Jobs take ``<artifacts>/jobs.lock`` in their worker; a ``cifar-core train`` typed in a
    terminal takes it here, so the CLI and the app never train at the same time on 2 cores.
    ``on_wait`` is called once if the slot is busy, before blocking.
    """
    root = artifacts_root(artifacts)
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
