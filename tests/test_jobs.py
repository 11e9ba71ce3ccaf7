"""The job system with real processes: queue order, stop, SIGKILL, restart, failures.

Jobs train model 1 on the tiny CIFAR-100 archive. The queue runs them one at a time, so these
tests never train two models at once on the shared cores.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cifar_core.cli import main as cli_main
from cifar_core.errors import ConfigError, DataError, RunFolderError
from cifar_core.jobs import (
    JobError,
    describe_progress,
    format_duration,
    job_info,
    list_jobs,
    read_log_tail,
    resume_queued_jobs,
    stop_job,
    submit_job,
    submit_progression,
)
from cifar_core.jobs import queue as job_queue
from cifar_core.runs import store
from cifar_core.runs.files import read_json
from cifar_core.runs.store import RunWriter, load_run, runs_root

LONG = {"epochs": 500, "patience": 0}  # trains until stopped (patience 0: no early stop)
SHORT = {"epochs": 1}


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_json(artifacts: Path, run_id: str) -> dict:
    return read_json(runs_root(artifacts) / run_id / "run.json")


def job_pid(artifacts: Path, run_id: str) -> int:
    return read_json(runs_root(artifacts) / run_id / "job.json")["pid"]


def group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def kill_hard(artifacts: Path, run_id: str) -> None:
    """SIGKILL a job's process group, as the OOM killer or a power cut would end it."""
    path = runs_root(artifacts) / run_id
    os.killpg(job_pid(artifacts, run_id), signal.SIGKILL)
    wait_until(lambda: not job_queue.process_alive(path), 10, f"{run_id} to die")


def training_started(artifacts: Path, run_id: str) -> bool:
    run = run_json(artifacts, run_id)
    return run["status"] == "running" and bool((run.get("progress") or {}).get("last"))


@pytest.fixture
def artifacts(tmp_path):
    """An artifacts root; any job process still alive at the end is killed."""
    root = tmp_path / "artifacts"
    yield root
    for path in job_queue.job_folders(root):
        job = job_queue.read_job_record(path) or {}
        if job.get("pid") and job_queue.process_alive(path):
            os.killpg(job["pid"], signal.SIGKILL)


# ------------------------------------------------------------------ checks before any work


def test_bad_requests_are_refused_before_a_folder_is_claimed(artifacts, tiny_cifar100):
    with pytest.raises(ConfigError, match="unknown model 99"):
        submit_job(artifacts, model=99, data=str(tiny_cifar100))
    with pytest.raises(ConfigError, match="epochs"):
        submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides={"epochs": 0})
    with pytest.raises(ConfigError, match="cannot override"):
        submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides={"dropout": 0.5})
    with pytest.raises(ConfigError, match="freeze-base"):
        submit_job(artifacts, model=1, data=str(tiny_cifar100),
                   overrides={"freeze_base": True})
    with pytest.raises(ConfigError, match="unknown label set"):
        submit_job(artifacts, model=1, labels="medium", data=str(tiny_cifar100))
    with pytest.raises(DataError, match="no such file"):
        submit_job(artifacts, model=1, data=str(artifacts.parent / "missing.tar.gz"))
    with pytest.raises(ConfigError, match="unknown model 9"):  # one bad model: none queued
        submit_progression(artifacts, models=[1, 9], data=str(tiny_cifar100))
    assert not runs_root(artifacts).exists() or list(runs_root(artifacts).iterdir()) == []


def test_run_ids_from_outside_are_validated(artifacts, tmp_path):
    runs_root(artifacts).mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    (runs_root(artifacts) / "link").symlink_to(outside)
    for bad in ("../elsewhere", "/etc", "a/../../b", "..", "link"):
        for call in (lambda rid: stop_job(artifacts, rid),
                     lambda rid: read_log_tail(artifacts, rid),
                     lambda rid: job_info(artifacts, rid)):
            with pytest.raises(RunFolderError):
                call(bad)
    with pytest.raises(JobError, match="no run"):
        stop_job(artifacts, "20990101-000000-m1-fine")
    assert (outside / "run.json").read_text() == "{}"


def test_cli_run_dir_only_adopts_a_queued_folder_under_the_artifacts(artifacts, tmp_path,
                                                                    capsys):
    """`cifar-core train --run-dir` refuses foreign, finished or --all folders up front."""
    done = RunWriter.create(artifacts, "m1-fine", status="queued")
    done.set_status("completed")
    stray = tmp_path / "stray"
    stray.mkdir()
    for run_dir, which, message in ((str(stray), ["--model", "1"], "not a run folder under"),
                                    (str(done.path), ["--model", "1"], "completed, not queued"),
                                    (str(done.path), ["--all"], "use --model")):
        code = cli_main(["train", *which, "--artifacts", str(artifacts), "--run-dir", run_dir])
        assert code == 2 and message in capsys.readouterr().err
    assert not (stray / "run.json").exists()
    assert run_json(artifacts, done.run_id)["status"] == "completed"


def test_progress_in_words():
    assert format_duration(None) == "unknown"
    assert format_duration(42.4) == "42 s"
    assert format_duration(75) == "1 min 15 s"
    assert format_duration(3 * 3600 + 120) == "3 h 02 min"
    info = job_queue.JobInfo(run_id="r", path=Path("r"), status="running", phase="training",
                             epoch=3, epochs=10, epochs_done=2, step=5, steps=20,
                             eta_seconds=80)
    assert describe_progress(info) == "epoch 3/10 · batch 5/20 · ETA 1 min 20 s"
    caching = job_queue.JobInfo(run_id="f", path=Path("f"), status="running",
                                phase="features", step=3, steps=8, epoch=1, epochs=10)
    assert describe_progress(caching) == "computing the frozen base's features 3/8"
    queued = job_queue.JobInfo(run_id="q", path=Path("q"), status="queued", queue_position=3)
    assert describe_progress(queued) == "queued: 2 job(s) ahead"


def test_progress_fraction_and_eta_come_from_the_run_folder(artifacts):
    """A run folder written by RunWriter as execute_run writes it, mid-epoch 3 of 4."""
    writer = RunWriter.create(artifacts, "m1-fine", status="running")
    writer.write_history([{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                           "val_accuracy": 0.4, "seconds": 10.0} for e in (1, 2)])
    writer.set_progress(phase="training", epoch=3, epochs=4, step=25, steps=100,
                        last={"epoch": 2})
    writer.flush()
    writer.set_progress(phase="features", step=1, steps=2)  # not batches: ignored
    writer.flush()
    assert job_info(artifacts, writer.run_id).fraction == pytest.approx(2 / 4)
    writer.set_progress(phase="training", step=25, steps=100)  # as on_batch writes it
    writer.flush()
    info = job_info(artifacts, writer.run_id)
    assert info.status == "running" and not info.is_job
    assert info.epochs_done == 2 and info.epoch == 3
    assert info.fraction == pytest.approx((2 + 0.25) / 4)
    assert info.eta_seconds == pytest.approx(10.0 * (4 - 2.25))
    # A CLI-started run appears in the job list while it runs.
    assert [j.run_id for j in list_jobs(artifacts)] == [writer.run_id]

    # Damaged files never break the listing: progress is shown as far as it can be read.
    (writer.path / "history.csv").write_text("epoch,loss\none,two\n")
    writer.record["progress"] = {"phase": "training", "last": "garbage", "epochs": "4"}
    writer.flush()
    [info] = list_jobs(artifacts)
    assert (info.status, info.epochs_done, info.epochs, info.fraction) == ("running", 0, None, 0)


# ------------------------------------------------------------------------ real processes


@pytest.mark.slow
def test_two_jobs_submitted_at_once_get_their_own_folders_and_run_one_at_a_time(
        artifacts, tiny_cifar100):
    barrier = threading.Barrier(2)
    run_ids: list[str] = []

    def submit(model):
        barrier.wait()
        run_ids.append(submit_job(artifacts, model=model, data=str(tiny_cifar100),
                                  overrides=SHORT))

    threads = [threading.Thread(target=submit, args=(1,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(run_ids)) == 2  # same model, same second: still two folders

    snapshots = []

    def both_done():
        jobs = list_jobs(artifacts, include_finished=True)
        snapshots.append([(j.run_id, j.status, j.queue_position) for j in jobs])
        return all(j.status == "completed" for j in jobs) and len(jobs) == 2

    wait_until(both_done, 150, "both jobs to complete", interval=0.5)
    assert all(sum(status == "running" for _, status, _ in snap) <= 1 for snap in snapshots)
    assert any(("running" in [s for _, s, _ in snap]) and any(p == 1 for *_, p in snap)
               for snap in snapshots), "a job was never seen waiting behind a running one"
    first, second = sorted(run_ids, key=lambda rid: job_queue.job_sort_key(
        read_json(runs_root(artifacts) / rid / "job.json"), Path(rid)))
    slots = {rid: run_json(artifacts, rid)["queue"] for rid in run_ids}
    assert slots[second]["slot_acquired_ts"] >= slots[first]["slot_released_ts"]
    for rid in run_ids:
        record = load_run(runs_root(artifacts) / rid)
        assert record.status == "completed" and record.problems == []
        assert record.config["hyperparameters"]["epochs"] == 1
        assert "test top-1" in read_log_tail(artifacts, rid)
        pid = job_pid(artifacts, rid)
        wait_until(lambda pid=pid: group_gone(pid), 30, "the finished job's process to exit")


@pytest.mark.slow
def test_stop_a_queued_job_then_the_running_one(artifacts, tiny_cifar100):
    running = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=LONG)
    queued = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=SHORT)
    wait_until(lambda: training_started(artifacts, running), 90, "the first job to train")
    assert job_info(artifacts, queued).queue_position == 1

    info = stop_job(artifacts, queued)
    assert info.status == "stopped" and "before it started" in info.error
    assert group_gone(job_pid(artifacts, queued))
    assert "queue" not in run_json(artifacts, queued)  # it never held the training slot

    info = stop_job(artifacts, running)
    assert info.status == "stopped" and "SIGTERM" in info.error
    assert group_gone(job_pid(artifacts, running))
    record = load_run(runs_root(artifacts) / running)
    assert record.status == "stopped" and record.run["ended_at"]
    assert len(store.read_history(record.path)) >= 1  # what it learned so far is kept
    assert not (record.path / "metrics.json").exists()
    assert stop_job(artifacts, running).status == "stopped"  # stopping again: no change
    assert [j.run_id for j in list_jobs(artifacts)] == []


@pytest.mark.slow
def test_a_killed_job_reads_failed_and_the_next_job_starts(artifacts, tiny_cifar100,
                                                           monkeypatch):
    victim = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=LONG)
    follower = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=SHORT)
    wait_until(lambda: training_started(artifacts, victim), 90, "the first job to train")
    kill_hard(artifacts, victim)

    # The job system knows at once (its lock is free); the store alone, once the heartbeat
    # is stale. It is never `running` forever and never `completed`.
    info = job_info(artifacts, victim)
    assert info.status == "failed" and info.error.startswith("interrupted")
    monkeypatch.setattr(store, "HEARTBEAT_STALE_SECONDS", 0.5)
    time.sleep(1.0)
    assert load_run(runs_root(artifacts) / victim).status == "failed"
    assert not (runs_root(artifacts) / victim / "metrics.json").exists()

    wait_until(lambda: run_json(artifacts, follower)["status"] == "completed", 120,
               "the next job to complete")
    assert resume_queued_jobs(artifacts) == []  # nothing queued is left; the dead run...
    assert run_json(artifacts, victim)["status"] == "failed"  # ...is now recorded failed


@pytest.mark.slow
def test_queued_jobs_survive_a_restart(artifacts, tiny_cifar100):
    """Both processes vanish while queued (a restart); resuming runs them, in order."""
    first = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=SHORT)
    second = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=SHORT)
    for run_id in (first, second):
        kill_hard(artifacts, run_id)
    jobs = list_jobs(artifacts)
    assert [(j.run_id, j.status, j.alive) for j in jobs] == [
        (first, "queued", False), (second, "queued", False)]
    assert all("process is gone" in j.note and j.queue_position is None for j in jobs)

    assert resume_queued_jobs(artifacts) == [first, second]
    assert resume_queued_jobs(artifacts) == []  # alive again: not launched twice
    wait_until(lambda: all(run_json(artifacts, r)["status"] == "completed"
                           for r in (first, second)), 150, "both resumed jobs to complete")
    slots = [run_json(artifacts, r)["queue"] for r in (first, second)]
    assert slots[1]["slot_acquired_ts"] >= slots[0]["slot_released_ts"]
    launches = read_json(runs_root(artifacts) / first / "job.json")["launches"]
    assert len(launches) == 2


@pytest.mark.slow
def test_a_job_that_keeps_dying_before_it_runs_is_given_up(artifacts, tiny_cifar100):
    run_id = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=SHORT)
    kill_hard(artifacts, run_id)
    for _ in range(job_queue.MAX_LAUNCHES - 1):
        assert resume_queued_jobs(artifacts) == [run_id]
        kill_hard(artifacts, run_id)
    assert resume_queued_jobs(artifacts) == []
    info = job_info(artifacts, run_id)
    assert info.status == "failed" and "3 times" in info.error


@pytest.mark.slow
def test_a_job_that_fails_before_training_shows_the_cli_error(artifacts, tmp_path):
    broken = tmp_path / "not-a-data-set"  # a folder with no train/<class>/ images
    broken.mkdir()
    run_id = submit_job(artifacts, model=1, data=str(broken), overrides=SHORT)
    wait_until(lambda: run_json(artifacts, run_id)["status"] == "failed", 90,
               "the job to fail")
    info = job_info(artifacts, run_id)
    assert str(broken) in info.error  # the data error, as the CLI printed it
    assert f"error: {info.error}" in read_log_tail(artifacts, run_id)
    wait_until(lambda: not job_queue.process_alive(runs_root(artifacts) / run_id), 30,
               "the failed job's process to exit")
