"""The job system with real processes: queue order, stop, SIGKILL, restart, failures.

Jobs train model 1 on the tiny CIFAR-100 archive. The queue runs them one at a time, so these
tests never train two models at once on the shared cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

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
from cifar_core.jobs import launch as job_launch
from cifar_core.jobs import locks as job_locks
from cifar_core.jobs import logs as job_logs
from cifar_core.jobs import records as job_records
from cifar_core.jobs import recovery as job_recovery
from cifar_core.jobs import status as job_status
from cifar_core.jobs.request import (
    JOB_OVERRIDES,
    build_request,
    read_request,
    requested_settings,
)
from cifar_core.jobs.summary import (
    OVERRIDE_WORDS,
    describe_metrics,
    describe_request,
    headline_metrics,
)
from cifar_core.runs import store
from cifar_core.runs.files import atomic_write_json, read_json
from cifar_core.runs.progress import where_stopped
from cifar_core.runs.store import RunWriter, load_run, runs_root
from cifar_core.training.config import PROFILES

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
    wait_until(lambda: not job_locks.process_alive(path), 10, f"{run_id} to die")


def training_started(artifacts: Path, run_id: str) -> bool:
    run = run_json(artifacts, run_id)
    return run["status"] == "running" and bool((run.get("progress") or {}).get("last"))


@pytest.fixture
def artifacts(tmp_path):
    """An artifacts root; any job process still alive at the end is killed."""
    root = tmp_path / "artifacts"
    yield root
    for path in job_records.job_folders(root):
        job = job_records.read_job_record(path) or {}
        if job.get("pid") and job_locks.process_alive(path):
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


def test_a_worker_only_adopts_a_queued_folder_under_the_artifacts(artifacts, tmp_path):
    """The folder a job trains into: refused when foreign, finished or a link, up front."""
    done = RunWriter.create(artifacts, "m1-fine", status="queued")
    done.set_status("completed")
    stray = tmp_path / "stray"
    stray.mkdir()
    for run_dir, message in ((stray, "not a run folder under"),
                             (done.path, "completed, not queued")):
        with pytest.raises(RunFolderError, match=message):
            job_launch.adopt_queued_run(run_dir, artifacts)
    queued = RunWriter.create(artifacts, "m1-fine", status="queued")
    assert job_launch.adopt_queued_run(queued.path, artifacts).path == queued.path
    assert not (stray / "run.json").exists()
    assert run_json(artifacts, done.run_id)["status"] == "completed"


def test_progress_in_words():
    assert format_duration(None) == "unknown"
    assert format_duration(42.4) == "42 s"
    assert format_duration(75) == "1 min 15 s"
    assert format_duration(3 * 3600 + 120) == "3 h 02 min"
    info = job_status.JobInfo(run_id="r", path=Path("r"), status="running", phase="training",
                             epoch=3, epochs=10, epochs_done=2, step=5, steps=20,
                             eta_seconds=80)
    assert describe_progress(info) == "epoch 3/10 · batch 5/20 · ETA 1 min 20 s"
    queued = job_status.JobInfo(run_id="q", path=Path("q"), status="queued", queue_position=3)
    assert describe_progress(queued) == "queued: 2 job(s) ahead"


@pytest.mark.parametrize("phase, done, total, unit, eta, expected", [
    ("features", 24250, 120000, "images", 370,
     "computing the frozen base's features · 24,250/120,000 images · ETA 6 min 10 s"),
    ("search_stage_1", 2.5, 10, "trials", 95,
     "search stage 1 (random search) · trial 3/10 · ETA 1 min 35 s"),
    ("search_stage_2", 4, 4, "trials", 0, "search stage 2 (grid search) · trial 4/4 · ETA 0 s"),
    ("evaluating", 40, 79, "batches", 12,
     "evaluating on the test set · batch 40/79 · ETA 12 s"),
    ("features", 3, 8, None, None,  # recorded before phases had a unit and a start time
     "computing the frozen base's features · 3/8 · ETA not known yet"),
    ("a_later_phase", 1, 2, "widgets", None, "a later phase · 1/2 widgets · ETA not known yet"),
])
def test_every_phase_reads_the_same_way(phase, done, total, unit, eta, expected):
    info = job_status.JobInfo(run_id="r", path=Path("r"), status="running", phase=phase,
                             step=done, steps=total, unit=unit, eta_seconds=eta, epochs=40)
    assert describe_progress(info) == expected


def test_phases_without_a_count_and_ended_jobs_in_words():
    def info(**fields):
        return job_status.JobInfo(run_id="r", path=Path("r"), **fields)

    assert describe_progress(info(status="running", phase="loading data")) == \
        "starting up (loading TensorFlow and the data)"
    assert describe_progress(info(status="running", phase="evaluating", epochs_done=3)) == \
        "evaluating on the test set · training done after 3 epoch(s)"
    assert describe_progress(info(status="running", phase="training", epoch=1, epochs=5)) \
        == "epoch 1/5 · ETA not known yet"
    assert describe_progress(info(status="stopped", error="stopped at epoch 3 of 40 (2 "
                                  "finished)", epochs_done=2)) == \
        "Stopped at epoch 3 of 40 (2 finished)"
    assert describe_progress(info(status="completed", epochs_done=4)) == \
        "completed after 4 epoch(s)"


def run_with_progress(progress: dict, status: str = "running") -> dict:
    return {"status": status, "progress": progress}


def test_fraction_and_eta_of_any_phase_come_from_its_count_and_start():
    """What report_phase records is enough to tell how far a phase is and how long is left."""
    started = 1000.0
    features = {"phase": "features", "done": 30000, "total": 120000, "unit": "images",
                "phase_started_ts": started, "phase_started_done": 0,
                "updated_ts": started + 60}  # 500 images/s
    shown = job_status._progress(run_with_progress(features), "running", [], now=started + 62)
    assert shown["fraction"] == pytest.approx(0.25)
    assert shown["eta_seconds"] == pytest.approx(90000 / 500 - 2)  # 2 s since the update
    assert (shown["phase"], shown["step"], shown["steps"], shown["unit"]) == (
        "features", 30000, 120000, "images")

    # A resumed search stage: 4 trials were done before it started again; 2 more in 100 s.
    stage = {"phase": "search_stage_1", "done": 6, "total": 10, "unit": "trials",
             "phase_started_ts": started, "phase_started_done": 4, "updated_ts": started + 100}
    shown = job_status._progress(run_with_progress(stage), "running", [], now=started + 100)
    assert shown["fraction"] == pytest.approx(0.6)
    assert shown["eta_seconds"] == pytest.approx(4 * 50)

    # The first epoch: the rest of it at its batches' rate, then as many epochs more.
    first = {"phase": "training", "epoch": 1, "epochs": 3, "done": 25, "total": 100,
             "unit": "batches", "phase_started_ts": started, "phase_started_done": 0,
             "updated_ts": started + 5}
    shown = job_status._progress(run_with_progress(first), "running", [], now=started + 5)
    assert shown["fraction"] == pytest.approx(0.25 / 3)
    assert shown["eta_seconds"] == pytest.approx(15 + 2 * 20)

    # Nothing done yet, or no start time (an older record): no ETA, never a made-up one.
    for progress in ({**features, "done": 0}, {"phase": "features", "step": 3, "steps": 8}):
        shown = job_status._progress(run_with_progress(progress), "running", [])
        assert shown["eta_seconds"] is None and shown["fraction"] == pytest.approx(
            progress.get("done", 3) / progress.get("total", 8))
    # An ended run shows no ETA; a completed one a full bar.
    assert job_status._progress(run_with_progress(features, "stopped"), "stopped",
                               [])["eta_seconds"] is None
    assert job_status._progress(run_with_progress(features), "completed", [])["fraction"] == 1


def test_report_phase_notes_the_start_and_throttles_its_writes(artifacts, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(store, "time", SimpleNamespace(time=lambda: clock[0]))
    writer = RunWriter.create(artifacts, "m8-fine", status="running")
    writes = []
    real_flush = writer.flush
    monkeypatch.setattr(writer, "flush", lambda: (writes.append(clock[0]), real_flush()))

    writer.report_phase("features", 0, 1000, unit="images")  # a phase begins: written
    for done in range(10, 1000, 10):  # a fast loop: 99 updates in 0.99 s
        clock[0] += 0.01
        writer.report_phase("features", done, 1000, unit="images")
    assert len(writes) == 1
    clock[0] += 0.01
    writer.report_phase("features", 1000, 1000, unit="images")  # complete: written at once
    assert len(writes) == 2
    saved = read_json(writer.path / "run.json")["progress"]
    assert (saved["phase"], saved["done"], saved["total"]) == ("features", 1000, 1000)
    assert saved["phase_started_ts"] == 1000.0 and saved["updated_ts"] == pytest.approx(1001)

    clock[0] += 0.1
    writer.report_phase("evaluating", 1, 79, unit="batches")  # another phase: its own start
    saved = read_json(writer.path / "run.json")["progress"]
    assert saved["phase_started_ts"] == pytest.approx(1001.1) and saved["unit"] == "batches"
    clock[0] += 1.5
    writer.report_phase("evaluating", 20, 79, unit="batches")  # over a second later: written
    assert len(writes) == 4
    # A phase without a count drops the previous phase's count with it.
    writer.set_progress(phase="saving")
    assert "done" not in writer.record["progress"] and "unit" not in writer.record["progress"]


def test_progress_fraction_and_eta_come_from_the_run_folder(artifacts):
    """A run folder written by RunWriter as execute_run writes it, mid-epoch 3 of 4."""
    writer = RunWriter.create(artifacts, "m1-fine", status="running")
    writer.write_history([{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                           "val_accuracy": 0.4, "seconds": 10.0} for e in (1, 2)])
    writer.set_progress(phase="training", epoch=3, epochs=4, last={"epoch": 2})
    writer.report_phase("features", 1, 2, unit="images")  # a phase of its own: its fraction
    assert job_info(artifacts, writer.run_id).fraction == pytest.approx(1 / 2)
    writer.report_phase("training", 25, 100, unit="batches")  # as on_batch writes it
    writer.flush()
    info = job_info(artifacts, writer.run_id)
    assert info.status == "running" and not info.is_job
    assert info.epochs_done == 2 and info.epoch == 3
    assert info.fraction == pytest.approx((2 + 0.25) / 4)
    assert info.eta_seconds == pytest.approx(10.0 * (4 - 2.25))
    # A CLI-started run appears in the job list while it runs.
    assert [j.run_id for j in list_jobs(artifacts)] == [writer.run_id]

    # A run.json written before phases had counts (step/steps) still reads.
    writer.record["progress"] = {"phase": "training", "epoch": 3, "epochs": 4, "step": 50,
                                 "steps": 100, "last": {"epoch": 2}}
    writer.flush()
    info = job_info(artifacts, writer.run_id)
    assert (info.step, info.steps, info.fraction) == (50, 100, pytest.approx(2.5 / 4))

    # Damaged files never break the listing: progress is shown as far as it can be read.
    (writer.path / "history.csv").write_text("epoch,loss\none,two\n")
    writer.record["progress"] = {"phase": "training", "last": "garbage", "epochs": "4",
                                 "done": "x", "total": -1}
    writer.flush()
    [info] = list_jobs(artifacts)
    assert (info.status, info.epochs_done, info.epochs, info.fraction) == ("running", 0, None, 0)


def test_where_a_stopped_run_stopped():
    def where(status="running", **progress):
        return where_stopped({"status": status, "progress": progress})

    assert where("queued") == "while queued"
    assert where("queued", phase="starting") == \
        "while starting up (loading TensorFlow and the data)"
    assert where(phase="training", epoch=3, epochs=40, last={"epoch": 2}) == \
        "at epoch 3 of 40 (2 finished)"
    assert where(phase="training", epoch=1, epochs=40, done=7, total=100) == "at epoch 1 of 40"
    assert where(phase="features", done=24250, total=120000, unit="images") == \
        "while computing the frozen base's features (24,250/120,000 images)"
    assert where(phase="search_stage_1", done=2.4, total=10, unit="trials") == \
        "in search stage 1 (random search), trial 3/10"
    assert where(phase="evaluating", done=40, total=79, unit="batches") == \
        "while evaluating on the test set (batch 40/79)"
    assert where(phase="loading data") == "while loading the data"
    # history.csv may know of more finished epochs than the last progress write
    assert where_stopped({"status": "running", "progress": {
        "phase": "training", "epoch": 2, "epochs": 5, "last": {"epoch": 1}}}, 2) == \
        "at epoch 3 of 5 (2 finished)"


E_DT_HALF = ("E0000 00:00:1764625000.123456   12345 cpu_feature_guard.cc:227] oneDNN "
             "supports DT_HALF only on platforms with AVX-512. Falling back to the default "
             "Eigen-based implementation if present.")
TF_NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796159517.045189    6941 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796159517.045572    6941 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1796159517.151477    6941 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, "
    "in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    "W0000 00:00:1764625001.000001   12345 loader_impl.cc:75] some warning from TensorFlow",
    E_DT_HALF,
    "E0000 00:00:1796159520.172552    6941 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1764625000.5   12345 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
    "Attempting to register factory for plugin cuDNN when one has already been registered",
    "E0000 00:00:1796160000.965770   13722 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...> "
    "This may be expected if your graph generating binary is newer  than this binary. "
    "Unknown attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_15}}",
]
REAL_LINES = [
    "epoch 1/3: loss 4.1000 acc 0.0500 val_loss 4.0000 val_acc 0.0600 (2.0s)",
    "E0000 00:00:1764625002.000000   12345 bfc_allocator.cc:462] Allocator ran out of memory "
    "trying to allocate 4.00GiB",
    "F0000 00:00:1764625003.000000   12345 tensor.cc:700] Check failed: new_num_elements == "
    "NumElements()",
    "Traceback (most recent call last):",
    "error: no images under train/",
    "W: a line that only looks like a warning",
]


def test_log_tail_leaves_out_tensorflow_noise_and_keeps_real_errors(artifacts):
    assert all(job_logs.is_log_noise(line) for line in TF_NOISE)
    assert not any(job_logs.is_log_noise(line) for line in REAL_LINES)
    writer = RunWriter.create(artifacts, "m1-fine", status="running")
    mixed = [line for pair in zip(TF_NOISE, REAL_LINES * 2, strict=False) for line in pair]
    (writer.path / "log.txt").write_text("\n".join(mixed) + "\n")
    assert read_log_tail(artifacts, writer.run_id).splitlines() == \
        [line for line in mixed if line in REAL_LINES]
    assert E_DT_HALF in read_log_tail(artifacts, writer.run_id, raw=True)


# ------------------------------------------- requests, the progression, results (no process)


def test_model7_search_settings_become_the_configs_and_are_checked_like_the_clis(
        tiny_cifar100):
    search = {"search_mode": "cached", "search_trials": 6, "search_folds": 3,
              "search_epochs": 2, "grid_epochs": 4, "grid_trials": 5}
    request = build_request(model=7, data=str(tiny_cifar100),
                            overrides={**search, "grid_epochs": None})
    config = request.config  # what the job's process will train
    assert (config.search_mode, config.search_trials, config.search_folds,
            config.search_epochs, config.grid_trials) == ("cached", 6, 3, 2, 5)
    assert config.grid_epochs == PROFILES["quick"]["grid_epochs"]  # None: the profile's
    assert request.overrides == {k: v for k, v in search.items() if k != "grid_epochs"}
    with pytest.raises(ConfigError, match="folds"):
        build_request(model=7, data=str(tiny_cifar100), overrides={"search_folds": 1})
    with pytest.raises(ConfigError, match="unknown search mode"):
        build_request(model=7, data=str(tiny_cifar100), overrides={"search_mode": "fast"})
    with pytest.raises(ConfigError, match="only to model 7"):
        build_request(model=6, data=str(tiny_cifar100), overrides={"search_trials": 6})


def test_a_jobs_overrides_are_read_back_in_words(tiny_cifar100):
    request = build_request(
        model=6, data=str(tiny_cifar100),
        overrides={"epochs": 1, "patience": 0, "freeze_base": True, "seed": None})
    settings = requested_settings(request.to_json() | {"schema_version": 2})
    assert settings["overrides"] == {"epochs": 1, "patience": 0, "freeze_base": True}
    job = job_status.JobInfo(run_id="r", path=Path("r"), status="queued", profile="quick",
                            request=settings)
    assert describe_request(job) == "quick profile, 1 epoch, no early stopping, base frozen"
    plain = requested_settings(build_request(model=1, data=str(tiny_cifar100)).to_json()
                               | {"schema_version": 2})
    assert describe_request(replace(job, request=plain)) == "quick profile"
    assert set(OVERRIDE_WORDS) == set(JOB_OVERRIDES)  # every override has words


def test_a_job_json_round_trips_its_config_and_refuses_what_it_cannot_read(tiny_cifar100):
    request = build_request(model=5, data=str(tiny_cifar100), overrides={"epochs": 2})
    job = {"schema_version": 2, **request.to_json()}
    again = read_request(json.loads(json.dumps(job)))  # as job.json holds it
    assert again.config == request.config and again.data == str(tiny_cifar100)
    assert again.config.epochs == 2 and again.run_prefix == "m5-fine"
    bad = json.loads(json.dumps(job))
    bad["config"]["epochs"] = 0
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        read_request(bad)
    bad["config"] = {**job["config"], "wormhole": 1}
    with pytest.raises(ConfigError, match="wormhole"):
        read_request(bad)
    with pytest.raises(ConfigError, match="schema 3"):
        read_request({**job, "schema_version": 3})


def test_a_job_queued_by_older_code_still_reads_its_arguments(tiny_cifar100, tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"x")
    legacy = {"schema_version": 1, "arguments": [
        "train", "--model", "6", "--labels", "fine", "--profile", "quick", "--epochs", "2",
        "--patience", "0", "--freeze-base", "--data", str(tiny_cifar100),
        "--backbone-weights", str(weights), "--artifacts", "/a", "--run-dir", "/a/runs/x"]}
    request = read_request(legacy)
    assert (request.config.model, request.config.epochs, request.config.patience,
            request.config.freeze_base) == (6, 2, 0, True)
    assert request.data == str(tiny_cifar100)
    assert request.config.backbone_weights == str(weights)
    assert request.overrides == {"epochs": 2, "patience": 0, "freeze_base": True}
    with pytest.raises(ConfigError, match="--teleport"):
        read_request({"schema_version": 1, "arguments": ["train", "--model", "1",
                                                         "--teleport", "yes"]})
    assert requested_settings({"schema_version": 1, "arguments": ["rm", "-rf"]}) == {}


def test_headline_metrics_follow_the_file(tmp_path):
    assert headline_metrics(tmp_path) is None
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test_top1": 0.4512, "test_top5": 0.7,
                                   "test_superclass_top1": 0.6049, "label_set": "fine"}))
    assert describe_metrics(headline_metrics(tmp_path)) == (
        "test top-1 45.1% · superclass 60.5%")
    metrics.write_text(json.dumps({"test_top1": 0.61, "test_superclass_top1": 0.61,
                                   "label_set": "coarse", "padding": "x" * 10}))
    assert describe_metrics(headline_metrics(tmp_path)) == "test top-1 61.0% (20 superclasses)"
    metrics.write_text("{not json")
    assert headline_metrics(tmp_path) is None


def test_the_progression_is_queued_once_while_it_is_queued_or_running(
        artifacts, tiny_cifar100, jobs_without_processes, monkeypatch):
    checked = job_launch._active_progression

    def slow_check(root, key):  # widen the window between the check and the submission
        found = checked(root, key)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(job_launch, "_active_progression", slow_check)
    barrier = threading.Barrier(2)
    results = []

    def click():  # two server threads, as two quick clicks or two tabs give
        barrier.wait()
        results.append(submit_progression(artifacts, models=range(1, 4),
                                          data=str(tiny_cifar100)))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(results, key=lambda result: result.already_queued)
    assert not first.already_queued and second.already_queued
    assert len(job_records.job_folders(artifacts)) == 3 == len(jobs_without_processes)
    assert second.run_ids == first.run_ids  # the same jobs, in queue order
    assert first.message.startswith("Queued 3 training jobs (models 1-3, quick profile): ")
    assert second.message == (f"The quick progression (models 1-3) is already queued or "
                              f"running: runs {', '.join(first.run_ids)}. Nothing new was "
                              "queued.")
    models = [read_json(runs_root(artifacts) / rid / "job.json")["config"]["model"]
              for rid in first.run_ids]
    assert models == [1, 2, 3]

    # Another progression (other models, or other data) is not the same one.
    other = submit_progression(artifacts, models=[1, 2], data=str(tiny_cifar100))
    assert not other.already_queued and len(job_records.job_folders(artifacts)) == 5

    # While one of its jobs is still waiting, it counts; once all have ended, it does not.
    for run_id in first.run_ids[:2]:
        RunWriter(runs_root(artifacts) / run_id).set_status("completed")
    again = submit_progression(artifacts, models=range(1, 4), data=str(tiny_cifar100))
    assert again.already_queued and again.run_ids == first.run_ids[2:]
    RunWriter(runs_root(artifacts) / first.run_ids[2]).set_status("failed", error="boom")
    fresh = submit_progression(artifacts, models=range(1, 4), data=str(tiny_cifar100))
    assert not fresh.already_queued and len(fresh.run_ids) == 3
    assert not set(fresh.run_ids) & set(first.run_ids)


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
    first, second = sorted(run_ids, key=lambda rid: job_records.job_sort_key(
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
    assert info.status == "stopped" and info.error == "stopped while queued"
    assert group_gone(job_pid(artifacts, queued))
    assert "queue" not in run_json(artifacts, queued)  # it never held the training slot
    assert describe_progress(info) == "Stopped while queued"

    info = stop_job(artifacts, running)
    assert info.status == "stopped"
    assert group_gone(job_pid(artifacts, running))
    record = load_run(runs_root(artifacts) / running)
    assert record.status == "stopped" and record.run["ended_at"]
    finished = len(store.read_history(record.path))
    assert finished >= 1  # what it learned so far is kept
    # Where it stopped, in words: the epoch it was in and those kept, not the signal.
    # (a stop landing between an epoch's end and history.csv's write counts it finished)
    where = re.fullmatch(r"stopped at epoch (\d+) of 500 \((\d+) finished\)", info.error)
    assert where and int(where[1]) == int(where[2]) + 1, info.error
    assert int(where[2]) in (finished, finished + 1)
    log = read_log_tail(artifacts, running, lines=400)
    assert "Traceback" not in log and "RunStopped" not in log, log
    assert f"Stopped by the user {info.error.removeprefix('stopped ')}" in log, log
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
    for _ in range(job_recovery.MAX_LAUNCHES - 1):
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
    wait_until(lambda: not job_locks.process_alive(runs_root(artifacts) / run_id), 30,
               "the failed job's process to exit")


@pytest.mark.slow
def test_a_job_queued_by_older_code_runs_and_an_unreadable_one_fails_plainly(
        artifacts, tiny_cifar100, capsys):
    from cifar_core.jobs import worker

    def queue_legacy(arguments: list[str]) -> Path:
        writer = RunWriter.create(artifacts, "m1-fine", status="queued")
        atomic_write_json(writer.path / "job.json", {
            "schema_version": 1, "run_id": writer.path.name, "submitted_ts": time.time(),
            "arguments": ["train", *arguments, "--artifacts", str(artifacts),
                          "--run-dir", str(writer.path)]})
        return writer.path

    good = queue_legacy(["--model", "1", "--labels", "fine", "--profile", "quick",
                         "--epochs", "1", "--data", str(tiny_cifar100)])
    assert worker.run_job(good) == 0
    record = load_run(good)
    assert record.status == "completed" and record.problems == []
    assert record.config["hyperparameters"]["epochs"] == 1
    bad = queue_legacy(["--model", "1", "--teleport", "yes"])
    assert worker.run_job(bad) == 1
    assert "--teleport" in run_json(artifacts, bad.name)["error"]
    assert "Traceback" not in capsys.readouterr().err
