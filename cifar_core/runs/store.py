"""Run folders: the contract between the library, the CLI and the dashboard.

``<artifacts>/runs/<run_id>/`` holds plain files, each written atomically:

=====================  =========================================================
``run.json``           id, status lifecycle, times, heartbeat, progress (phase, count,
                       its start: ``cifar_core.runs.progress``), error
``config.json``        model spec, labels, profile, hyperparameters, seed, data
                       identity, package versions, git commit
``history.csv``        one row per epoch
``metrics.json``       test metrics, per-class metrics, confusion matrices
``predictions.npz``    test predictions (top-k classes and probabilities)
``embedding.npz``      the test images' penultimate-layer activations, float16 (runs
                       written before it have none: ``cifar_core.analysis.embedding``)
``model.keras``        the trained model (loaded with Keras safe mode on)
``log.txt``            the job's console output (jobs started from the app)
``job.json``           a queued job's request and launches (``cifar_core.jobs``)
``trials.csv``         model 7: one row per search trial (``cifar_core.search``)
``search.json``        model 7: search settings, grid, chosen configuration
``tuner/``             model 7: keras-tuner's own state, for resuming
``tensorboard/``       TensorBoard event files, a copy of the history, parameters and test
                       metrics (``cifar_core.runs.tensorboard``)
=====================  =========================================================

Status lifecycle: ``queued`` -> ``running`` -> ``completed`` | ``failed`` | ``stopped``.
A ``running`` run whose heartbeat is older than ``HEARTBEAT_STALE_SECONDS`` is read back as
``failed`` (interrupted): its process died without saying so.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cifar_core import settings
from cifar_core.errors import RunFolderError
from cifar_core.runs.files import atomic_save, atomic_write_json, atomic_write_text, read_json
from cifar_core.runs.progress import PHASE_COUNT_FIELDS

SCHEMA_VERSION = 1  # bump on any incompatible change to the files above
RUNS_SUBDIR = "runs"
STATUSES = ("queued", "running", "completed", "failed", "stopped")
FINAL_STATUSES = ("completed", "failed", "stopped")
HEARTBEAT_SECONDS = 5.0  # how often a running process refreshes run.json
HEARTBEAT_STALE_SECONDS = 90.0  # no heartbeat for this long: the process is gone
PROGRESS_WRITE_SECONDS = 1.0  # report_phase rewrites run.json at most this often
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

RUN_FILE, CONFIG_FILE, HISTORY_FILE = "run.json", "config.json", "history.csv"
METRICS_FILE, PREDICTIONS_FILE, MODEL_FILE, LOG_FILE = (
    "metrics.json", "predictions.npz", "model.keras", "log.txt")
EMBEDDING_FILE = "embedding.npz"  # optional: older runs lack it


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def runs_root(artifacts: str | os.PathLike | None = None) -> Path:
    return settings.artifacts_dir(artifacts) / RUNS_SUBDIR


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise RunFolderError(f"invalid run id {run_id!r}: use letters, digits, '.', '_', '-'")
    return run_id


def run_path(root: Path, run_id: str) -> Path:
    """The folder of ``run_id`` under ``root``, refusing anything that leaves ``root``."""
    validate_run_id(run_id)
    root = Path(root)
    path = root / run_id
    if path.is_symlink() or (path.exists() and path.resolve().parent != root.resolve()):
        raise RunFolderError(f"run {run_id!r} is a link out of {root}; refused")
    return path


def resolve_run_ref(ref: str, artifacts: str | os.PathLike | None = None) -> Path:
    """A run given as an id (``cifar-core runs``) or as the path ``train`` printed.

    Either way the result is a folder directly in ``<artifacts>/runs`` that is not a link,
    so no reference reads or writes anything outside an artifacts folder. A path names its
    own artifacts folder (the one above its ``runs/``) unless ``artifacts`` is given; then
    it must lie in that one.
    """
    root = runs_root(artifacts)
    candidate = Path(ref).expanduser()
    if os.sep in ref or ref.startswith("."):
        if candidate.is_symlink():
            raise RunFolderError(f"{ref}: a link; give the run folder itself")
        if not candidate.is_dir() or not (candidate / RUN_FILE).is_file():
            raise RunFolderError(f"{ref}: not a run folder (no {RUN_FILE})")
        real = candidate.resolve()
        if artifacts is None and real.parent.name == RUNS_SUBDIR:
            root = real.parent
        if real.parent != root.resolve():
            where = f"the runs folder {root}" if artifacts is not None else \
                f"a {RUNS_SUBDIR}/ folder"
            raise RunFolderError(f"{ref}: not a run folder in {where}; refused")
        return run_path(root, real.name)
    path = run_path(root, ref)
    if not (path / RUN_FILE).is_file():
        raise RunFolderError(f"no run {ref!r} under {root}; `cifar-core runs` lists them")
    return path


def claim_run_folder(root: Path, prefix: str) -> Path:
    """Create a new, unique run folder; ``mkdir`` is the lock, so two starts never collide."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create the runs folder {root}: {exc.strerror}") from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_id = f"{stamp}-{prefix}" + (f"-{attempt}" if attempt > 1 else "")
        path = root / validate_run_id(run_id)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(f"cannot create a run folder in {root}: {exc.strerror}") from None
    raise RunFolderError(f"could not claim a run folder in {root}")


class RunWriter:
    """Writes one run folder. Thread-safe: a heartbeat thread shares it with training."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._heartbeat: threading.Thread | None = None
        self._stop_heartbeat = threading.Event()
        self._progress_written = 0.0  # when report_phase last wrote run.json (time.time())
        existing = self.path / RUN_FILE
        self.record: dict = read_json(existing) if existing.is_file() else {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.path.name,
            "status": "queued",
            "created_at": now_iso(),
            "started_at": None,
            "ended_at": None,
            "heartbeat_at": None,
            "pid": None,
            "host": socket.gethostname(),
            "error": None,
            "progress": {},
        }

    @classmethod
    def create(cls, artifacts: str | os.PathLike | None, prefix: str,
               status: str = "queued") -> RunWriter:
        writer = cls(claim_run_folder(runs_root(artifacts), prefix))
        writer.record["status"] = status
        writer.flush()
        return writer

    @property
    def run_id(self) -> str:
        return self.path.name

    def flush(self) -> None:
        with self._lock:
            self.record["heartbeat_at"] = now_iso()
            atomic_write_json(self.path / RUN_FILE, self.record)

    def set_status(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES, status
        with self._lock:
            self.record["status"] = status
            if status == "running":
                self.record["started_at"] = self.record.get("started_at") or now_iso()
                self.record["pid"] = os.getpid()
            if status in FINAL_STATUSES:
                self.record["ended_at"] = now_iso()
            if error is not None:
                self.record["error"] = error
            self.flush()

    def set_progress(self, **progress) -> None:
        """Update progress in memory; the heartbeat thread writes it (or ``flush`` now).

        A new ``phase`` drops the previous phase's count (``PHASE_COUNT_FIELDS``), so a
        phase never shows another one's "batch 20/20"; the rest (epochs, last) is kept.
        """
        with self._lock:
            current = self.record.get("progress") or {}
            if "phase" in progress and progress["phase"] != current.get("phase"):
                current = {k: v for k, v in current.items() if k not in PHASE_COUNT_FIELDS}
            self.record["progress"] = {**current, **progress}

    def report_phase(self, phase: str, done: float, total: float, *, unit: str | None = None,
                     write_now: bool = False, **extra) -> None:
        """Report ``done`` of ``total`` units of ``phase`` (features, a search stage, test
        batches, training batches): the one way every long phase reports its progress.

        The phase's start (time and count) is noted when it begins, when its total changes
        or when its count goes back (a new epoch), so readers derive its ETA
        (``cifar_core.runs.progress``). ``run.json`` is written at most every
        ``PROGRESS_WRITE_SECONDS``, and at once when a phase begins or completes (or
        ``write_now``: an epoch's end), so a fast batch loop does not rewrite it hundreds of
        times a second. A write that fails (full disk) is left to the next one: progress must
        not end a training.
        """
        now = time.time()
        with self._lock:
            current = self.record.get("progress") or {}
            previous = current.get("done")
            begins = (current.get("phase") != phase or current.get("total") != total
                      or not isinstance(previous, (int, float)) or done < previous)
            self.set_progress(phase=phase, done=done, total=total, unit=unit,
                              updated_ts=now, **extra)
            if begins:
                self.record["progress"].update(phase_started_ts=now, phase_started_done=done)
            if write_now or begins or done >= total or \
                    now - self._progress_written >= PROGRESS_WRITE_SECONDS:
                self._progress_written = now
                with contextlib.suppress(OSError):
                    self.flush()

    def start_heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> None:
        def beat():
            while not self._stop_heartbeat.wait(interval):
                # A full disk must not kill training; the next beat retries.
                with contextlib.suppress(OSError):
                    self.flush()

        self._heartbeat = threading.Thread(target=beat, name="run-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat:
            self._heartbeat.join(timeout=5)

    def write_json(self, name: str, data: dict) -> None:
        atomic_write_json(self.path / name, {"schema_version": SCHEMA_VERSION, **data})

    def write_history(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path / HISTORY_FILE, buffer.getvalue())

    def save_file(self, name: str, writer) -> None:
        atomic_save(self.path / name, writer)


@dataclass
class RunRecord:
    """A run folder read back. ``problems`` says why parts of it are unreadable."""

    run_id: str
    path: Path
    status: str
    run: dict = field(default_factory=dict)
    config: dict | None = None
    metrics: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return bool(self.run) and not any(p.startswith("run.json") for p in self.problems)

    @property
    def model_number(self) -> int | None:
        return (self.config or {}).get("model", {}).get("number")

    @property
    def label_set(self) -> str | None:
        return (self.config or {}).get("labels")

    def metric(self, name: str):
        return (self.metrics or {}).get(name)

    def file(self, name: str) -> Path:
        return self.path / name


def _check_schema(data, name: str) -> str | None:
    if not isinstance(data, dict):
        return f"{name}: not a JSON object"
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        return (f"{name}: schema version {version!r}, this version of cifar_core reads "
                f"{SCHEMA_VERSION}" + (" (written by a newer cifar_core)" if newer else ""))
    return None


def effective_status(run: dict, now: float | None = None) -> tuple[str, str | None]:
    """The status to show: a ``running`` run with a stale heartbeat was interrupted."""
    status = run.get("status")
    if status not in STATUSES:
        return "failed", f"unknown status {status!r}"
    if status == "running":
        beat = parse_iso(run.get("heartbeat_at"))
        now = time.time() if now is None else now
        if beat is None or now - beat > HEARTBEAT_STALE_SECONDS:
            return "failed", "interrupted: the training process stopped without finishing " \
                             "(no heartbeat since " + str(run.get("heartbeat_at")) + ")"
    return status, run.get("error")


def _links_in(path: Path) -> list[str]:
    """Names of the symbolic links in a run folder (the folder itself included)."""
    if path.is_symlink():
        return [path.name]
    try:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries if entry.is_symlink())
    except OSError:
        return []  # reading run.json then reports the problem


def load_run(path: Path) -> RunRecord:
    """Read a run folder; never raises for bad contents, records them in ``problems``.

    A folder that is, or holds, a symbolic link is ``unreadable`` and none of its files is
    opened: a link could point anywhere outside the artifacts folder.
    """
    path = Path(path)
    record = RunRecord(run_id=path.name, path=path, status="failed")
    links = _links_in(path)
    if links:  # a copied folder must not make the app read files outside the artifacts
        record.problems.append(f"links refused, not read: {', '.join(links)}")
        record.status = "unreadable"
        return record
    try:
        run = read_json(path / RUN_FILE)
        problem = _check_schema(run, RUN_FILE)
        if problem:
            record.problems.append(problem)
            record.status = "unreadable"
            return record
        record.run = run
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        record.problems.append(f"{RUN_FILE}: unreadable ({type(exc).__name__})")
        record.status = "unreadable"
        return record
    record.status, error = effective_status(run)
    if error and record.status == "failed":
        record.run = {**run, "error": error}
    for name, attr in ((CONFIG_FILE, "config"), (METRICS_FILE, "metrics")):
        file = path / name
        if not file.exists():
            if name == METRICS_FILE and record.status == "completed":
                record.problems.append(f"{name}: missing")
            continue
        try:
            data = read_json(file)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            record.problems.append(f"{name}: unreadable ({type(exc).__name__})")
            continue
        problem = _check_schema(data, name)
        if problem:
            record.problems.append(problem)
            continue
        setattr(record, attr, data)
    if record.status == "completed":
        for name in (MODEL_FILE, HISTORY_FILE, PREDICTIONS_FILE):
            if not (path / name).is_file():
                record.problems.append(f"{name}: missing")
    return record


def list_runs(artifacts: str | os.PathLike | None = None) -> list[RunRecord]:
    """Every run folder under the artifacts root, newest first."""
    root = runs_root(artifacts)
    if not root.is_dir():
        return []
    records = []
    for entry in sorted(root.iterdir(), reverse=True):
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        if not RUN_ID_PATTERN.match(entry.name):
            continue
        records.append(load_run(entry))
    return records


def read_history(path: Path) -> list[dict]:
    """``history.csv`` as a list of dicts with float values (empty if absent)."""
    file = Path(path) / HISTORY_FILE
    if not file.is_file():
        return []
    with open(file, encoding="utf-8", newline="") as handle:
        rows = []
        for row in csv.DictReader(handle):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
        return rows
