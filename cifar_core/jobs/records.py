"""A job's files in its run folder: ``job.json`` and the run's ``run.json``, read and
written safely, and where the artifacts root and a job's folder are."""

from __future__ import annotations

import socket
from pathlib import Path

from cifar_core import settings
from cifar_core.errors import CifarCoreError
from cifar_core.jobs.request import REQUEST_SCHEMA_VERSION
from cifar_core.runs.files import atomic_write_json, read_json
from cifar_core.runs.store import (
    FINAL_STATUSES,
    RUN_FILE,
    RUN_ID_PATTERN,
    RunWriter,
    parse_iso,
    run_path,
    runs_root,
)

JOB_SCHEMA_VERSION = REQUEST_SCHEMA_VERSION  # 2: the config; 1 (older jobs): CLI arguments
JOB_FILE = "job.json"
JOB_LOCK_FILE = "job.lock"
SLOT_LOCK_FILE = "jobs.lock"  # in the artifacts root: held by the job that trains
PROGRESSION_LOCK_FILE = "progression.lock"  # in the artifacts root: one progression check


class JobError(CifarCoreError):
    """A job could not be submitted, found or stopped; the message says why."""


def artifacts_root(artifacts) -> Path:
    return settings.artifacts_dir(artifacts)


def job_folder(artifacts, run_id: str) -> Path:
    """The run folder of ``run_id``, validated to lie inside the artifacts root."""
    path = run_path(runs_root(artifacts), run_id)
    if not (path / RUN_FILE).is_file():
        raise JobError(f"no run {run_id!r} under {runs_root(artifacts)}")
    return path


def read_json_or_none(file: Path) -> dict | None:
    try:
        data = read_json(file)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_job_record(path: Path) -> dict | None:
    return read_json_or_none(path / JOB_FILE)


def write_job_record(path: Path, job: dict) -> None:
    """Only the holder of the job's ``job.lock`` writes ``job.json`` (the launcher)."""
    atomic_write_json(path / JOB_FILE, job)


def read_run_record(path: Path) -> dict | None:
    return read_json_or_none(path / RUN_FILE)


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


def mark_final(path: Path, status: str, error: str) -> None:
    """Record a final status for a run whose process is gone (or never started)."""
    writer = RunWriter(path)
    if writer.record.get("status") in FINAL_STATUSES:
        return
    writer.set_status(status, error=error)


def this_host(job: dict) -> bool:
    return job.get("host") in (None, socket.gethostname())
