"""Getting CIFAR-100 from the dashboard: the official download as a background job.

One download at a time, in ``<artifacts>/downloads/cifar100/``:

=================  =========================================================================
``download.json``  what to fetch (origin, expected SHA-256, destination), its status
                   (``running`` / ``completed`` / ``failed``), bytes done and in all, when it
                   started and ended, and the error of a failed one
``download.lock``  locked (``flock``) by the download's process for its whole life
``log.txt``        what the process printed
=================  =========================================================================

``start_download`` starts ``python -m cifar_core.jobs.download <folder>`` detached, as jobs
are; asking while one is alive returns that one. The process calls
``cifar_core.data.cifar100.download_cifar100``, which writes to a temporary file, checks the
SHA-256 and only then renames it into the Keras cache, so a failed download leaves no partial
archive. Trainings queued while it runs wait for it (``cifar_core.jobs.worker``); if it
fails, they do not start, and the download's own record holds the one error message.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_core import settings
from cifar_core.data.cifar100 import ARCHIVE_NAME, ARCHIVE_SHA256, ORIGIN, download_cifar100
from cifar_core.errors import CifarCoreError
from cifar_core.jobs.locks import lock_held, try_lock
from cifar_core.jobs.records import artifacts_root, read_json_or_none
from cifar_core.runs.files import atomic_write_json
from cifar_core.runs.store import now_iso, parse_iso

DOWNLOADS_DIR = "downloads"
CIFAR100_DOWNLOAD = "cifar100"
RECORD_FILE = "download.json"
LOCK_FILE = "download.lock"
LOG_FILE = "log.txt"
PROGRESS_WRITE_SECONDS = 0.5  # download.json rewritten at most this often while it runs
FINISHING_SECONDS = 5.0  # an ended download's process lets go of its lock within this
_INTERRUPTED = ("interrupted: the download's process ended without finishing (killed, or "
                "the machine restarted); start it again")


@dataclass(frozen=True)
class DownloadInfo:
    """A download as the dashboard shows it."""

    status: str  # "running", "completed" or "failed"
    done: int = 0  # bytes
    total: int = 0  # bytes; 0 while the server has not said
    error: str | None = None
    dest: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def describe(self) -> str:
        """``"downloading CIFAR-100: 42.0 of 169.0 MB · ETA 1 min 05 s"``."""
        from cifar_core.runs.progress import format_duration

        megabytes = f"{self.done / 1e6:.1f}" + (f" of {self.total / 1e6:.1f}" if self.total
                                                else "")
        if self.status != "running":
            return f"CIFAR-100 download {self.status} ({megabytes} MB)"
        started = parse_iso(self.started_at)
        eta = ""
        if started and self.total and self.done:
            elapsed = max(time.time() - started, 1e-6)
            eta = f" · ETA {format_duration((self.total - self.done) * elapsed / self.done)}"
        return f"downloading CIFAR-100: {megabytes} MB{eta}"


def download_folder(artifacts=None) -> Path:
    return artifacts_root(artifacts) / DOWNLOADS_DIR / CIFAR100_DOWNLOAD


def download_info(artifacts=None) -> DownloadInfo | None:
    """The CIFAR-100 download's state (None when none was started here). A ``running`` one
    whose process is gone reads as failed (interrupted)."""
    folder = download_folder(artifacts)
    record = read_json_or_none(folder / RECORD_FILE)
    if record is None:
        return None
    status, error = record.get("status"), record.get("error")
    if status == "running" and not lock_held(folder / LOCK_FILE):
        status, error = "failed", _INTERRUPTED
    if status not in ("running", "completed", "failed"):
        status, error = "failed", f"unreadable download record (status {status!r})"
    return DownloadInfo(status=status, done=int(record.get("done") or 0),
                        total=int(record.get("total") or 0), error=error,
                        dest=record.get("dest"), started_at=record.get("started_at"),
                        ended_at=record.get("ended_at"))


def start_download(artifacts=None, *, origin: str = ORIGIN,
                   expected_sha256: str = ARCHIVE_SHA256,
                   dest: str | os.PathLike | None = None) -> DownloadInfo:
    """Start the CIFAR-100 download in its own process, or return the one under way.

    ``dest`` defaults to the Keras cache (``$KERAS_HOME/datasets/cifar-100-python.tar.gz``),
    where training looks first; ``origin`` and ``expected_sha256`` are the official ones
    (tests give a small archive of their own).
    """
    folder = download_folder(artifacts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + FINISHING_SECONDS
        while (lock_fd := try_lock(folder / LOCK_FILE)) is None:
            info = download_info(artifacts)
            # One download at a time: that one, unless it has just ended and its process
            # is still exiting (it holds the lock a moment longer).
            if info is None or info.active or time.monotonic() > deadline:
                return info
            time.sleep(0.1)
    except OSError as exc:
        raise CifarCoreError(f"cannot write the download's folder {folder}: "
                             f"{exc.strerror or exc}") from None
    try:
        target = Path(dest) if dest else settings.keras_datasets_dir() / ARCHIVE_NAME
        atomic_write_json(folder / RECORD_FILE, {
            "status": "running", "origin": origin, "sha256": expected_sha256,
            "dest": str(target.expanduser().resolve()), "done": 0, "total": 0,
            "started_at": now_iso(), "ended_at": None, "error": None})
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "PYTHONUNBUFFERED": "1"}
        with open(folder / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(folder)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(lock_fd,), env=env, close_fds=True)
        threading.Thread(target=process.wait, daemon=True,
                         name=f"download-reaper-{process.pid}").start()
    finally:
        os.close(lock_fd)  # the process holds its own copy of the lock
    return download_info(artifacts)


def wait_for_download(artifacts=None, *, poll_seconds: float = 1.0,
                      on_wait=None) -> DownloadInfo | None:
    """Block while a download is under way; return how it ended (None: there was none)."""
    said = False
    while True:
        info = download_info(artifacts)
        if info is None or not info.active:
            return info
        if on_wait and not said:
            on_wait(info)
            said = True
        time.sleep(poll_seconds)


def run_download(folder: Path) -> int:
    """The download's process: fetch, check, record the outcome from what happened."""
    folder = Path(folder)
    record = read_json_or_none(folder / RECORD_FILE) or {}
    last_write = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= PROGRESS_WRITE_SECONDS or (total and done >= total):
            last_write = now
            with contextlib.suppress(OSError):  # progress must not end the download
                atomic_write_json(folder / RECORD_FILE, {**record, "done": done,
                                                         "total": total})
            record.update(done=done, total=total)

    print(f"[{now_iso()}] downloading {record.get('origin')} to {record.get('dest')}",
          flush=True)
    try:
        download_cifar100(Path(record["dest"]), origin=record["origin"],
                          expected_sha256=record.get("sha256") or "", progress=progress)
    except (CifarCoreError, KeyError, OSError) as exc:
        message = str(exc) if isinstance(exc, CifarCoreError) else \
            f"{type(exc).__name__}: {exc}"
        atomic_write_json(folder / RECORD_FILE, {**record, "status": "failed",
                                                 "error": message, "ended_at": now_iso()})
        print(f"[{now_iso()}] failed: {message}", flush=True)
        return 1
    atomic_write_json(folder / RECORD_FILE, {**record, "status": "completed",
                                             "ended_at": now_iso()})
    print(f"[{now_iso()}] completed: {record['dest']} (SHA-256 checked)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_download(Path(sys.argv[1])) if len(sys.argv) == 2 else 2)
