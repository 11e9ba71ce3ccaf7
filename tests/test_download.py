"""CIFAR-100 downloaded from the dashboard: a background job, checked, one at a time, and
trainings that wait for it (on a small archive in the official format, served as a file)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time

import pytest
from cifar_archives import write_cifar100_archive

from cifar_core.jobs import download as downloads
from cifar_core.jobs import submit_job, worker
from cifar_core.runs.files import atomic_write_json, read_json
from cifar_core.runs.store import RunWriter, runs_root


@pytest.fixture
def archive(tmp_path):
    (tmp_path / "served").mkdir()
    path = write_cifar100_archive(tmp_path / "served" / "cifar-100-python.tar.gz")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _wait(artifacts, seconds=60):
    deadline = time.monotonic() + seconds
    while (info := downloads.download_info(artifacts)) is not None and info.active:
        assert time.monotonic() < deadline, "the download did not finish"
        time.sleep(0.2)
    return info


@pytest.mark.slow
def test_a_download_fetches_checks_and_places_the_archive(tmp_path, archive):
    source, sha = archive
    dest = tmp_path / "keras" / "datasets" / "cifar-100-python.tar.gz"
    artifacts = tmp_path / "artifacts"
    started = downloads.start_download(artifacts, origin=source.as_uri(), expected_sha256=sha,
                                       dest=dest)
    assert started.status in ("running", "completed")
    info = _wait(artifacts)
    assert info.status == "completed" and info.error is None
    assert dest.read_bytes() == source.read_bytes()
    assert info.done == info.total == source.stat().st_size and info.fraction == 1.0


@pytest.mark.slow
def test_a_download_with_the_wrong_checksum_fails_plainly_and_leaves_nothing(tmp_path,
                                                                           archive):
    source, _ = archive
    dest = tmp_path / "keras" / "datasets" / "cifar-100-python.tar.gz"
    artifacts = tmp_path / "artifacts"
    downloads.start_download(artifacts, origin=source.as_uri(), expected_sha256="0" * 64,
                             dest=dest)
    info = _wait(artifacts)
    assert info.status == "failed" and "SHA-256" in info.error
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    unreachable = downloads.start_download(artifacts, origin=(tmp_path / "nothing").as_uri(),
                                           dest=dest)
    assert unreachable is not None
    info = _wait(artifacts)
    assert info.status == "failed" and "could not download CIFAR-100" in info.error
    assert "cifar-100-python.tar.gz" in info.error  # and what to do instead


def _hold_a_running_download(artifacts):
    """A download under way: its record says running and its lock is held (by this test)."""
    folder = downloads.download_folder(artifacts)
    folder.mkdir(parents=True)
    fd = os.open(folder / downloads.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    atomic_write_json(folder / downloads.RECORD_FILE, {
        "status": "running", "done": 5_000_000, "total": 169_000_000,
        "started_at": "2026-01-01T00:00:00+00:00", "dest": "/x"})
    return fd


def test_only_one_download_runs_and_trainings_queued_meanwhile_wait_for_it(
        tmp_path, jobs_without_processes):
    artifacts = tmp_path / "artifacts"
    fd = _hold_a_running_download(artifacts)
    try:
        again = downloads.start_download(artifacts, origin="file:///never")
        assert again.active and again.done == 5_000_000  # that one, not a second
        assert read_json(downloads.download_folder(artifacts) / downloads.RECORD_FILE)[
            "dest"] == "/x"
        assert "downloading CIFAR-100: 5.0 of 169.0 MB · ETA" in again.describe()
        run_id = submit_job(artifacts, model=1)  # CIFAR-100 from the cache: waits
        assert read_json(runs_root(artifacts) / run_id / "job.json")["after_download"]
    finally:
        os.close(fd)
    gone = downloads.download_info(artifacts)  # the lock is free: its process is gone
    assert gone.status == "failed" and "interrupted" in gone.error


def test_a_training_that_waited_for_a_failed_download_does_not_start(tmp_path):
    artifacts = tmp_path / "artifacts"
    folder = downloads.download_folder(artifacts)
    folder.mkdir(parents=True)
    atomic_write_json(folder / downloads.RECORD_FILE, {"status": "failed",
                                                      "error": "no network"})
    writer = RunWriter.create(artifacts, "m1-fine", status="queued")
    from cifar_core.jobs.request import build_request

    atomic_write_json(writer.path / "job.json", {
        "schema_version": 2, "run_id": writer.path.name, "submitted_ts": time.time(),
        "after_download": True, **build_request(model=1).to_json()})
    assert worker.run_job(writer.path) == 0
    run = read_json(writer.path / "run.json")
    assert run["status"] == "stopped"
    assert "download it waited for failed" in run["error"]
