"""A `cifar-core train` process SIGKILLed in the middle of an epoch (an OOM kill, a power cut).

What must hold afterwards: the run reads `failed` (interrupted) once its heartbeat is stale,
never `running` forever and never `completed`; every file in its folder is complete (atomic
writes: a reader finds the old version or the new one, never half of one); a temporary file
left by the interrupted write is never taken for a result; no other run folder changed; the
training slot is free for the next training at once.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from many_runs import folder_digest

from cifar_core.analysis.runs import is_usable
from cifar_core.jobs.locks import training_slot
from cifar_core.runs import store
from cifar_core.runs.files import read_json
from cifar_core.runs.store import HISTORY_COLUMNS, list_runs, load_run, runs_root

# The hidden name atomic writes use while a file is being written (runs.files).
TEMPORARY_NAME = re.compile(r"^\.(run|config|history|metrics|model|predictions)\..+$")


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def history_rows(folder: Path) -> int:
    try:
        return max(0, len((folder / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def assert_complete_files(folder: Path) -> list[dict]:
    """Every result file present parses in full; returns the history rows."""
    run = read_json(folder / "run.json")
    assert run["schema_version"] == store.SCHEMA_VERSION and run["run_id"] == folder.name
    config = read_json(folder / "config.json")
    assert config["schema_version"] == store.SCHEMA_VERSION
    assert config["hyperparameters"]["epochs"] == 500 and config["model"]["number"] == 1
    with open(folder / "history.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == HISTORY_COLUMNS
        rows = list(reader)
    assert rows, "at least the first epoch was recorded before the kill"
    for number, row in enumerate(rows, start=1):
        assert int(row["epoch"]) == number
        assert all(row[column] not in ("", None) for column in HISTORY_COLUMNS), row
        [float(row[column]) for column in HISTORY_COLUMNS]
    return rows


@pytest.mark.slow
def test_training_killed_mid_epoch_reads_failed_and_touches_nothing_else(
        tmp_path, tiny_cifar100, fixture_runs, monkeypatch):
    artifacts = tmp_path / "artifacts"
    bystander = sorted((fixture_runs / "runs").iterdir())[0]
    shutil.copytree(bystander, runs_root(artifacts) / bystander.name)
    bystander = runs_root(artifacts) / bystander.name
    before = folder_digest(bystander)

    # Batch size 1: 400 steps per epoch, so an epoch lasts long enough to be killed inside.
    log = open(tmp_path / "train.log", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "cifar_core.cli", "train", "--model", "1", "--profile", "quick",
         "--epochs", "500", "--patience", "0", "--batch-size", "1", "--data",
         str(tiny_cifar100), "--artifacts", str(artifacts)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        victim = wait_for(lambda: next((p for p in runs_root(artifacts).iterdir()
                                        if p != bystander), None), 60, "the run folder")
        wait_for(lambda: history_rows(victim) >= 1, 60, "the first epoch to end")
        first_epoch = float(store.read_history(victim)[0]["seconds"])
        time.sleep(min(first_epoch / 4, 1.0))  # well inside epoch 2
        assert process.poll() is None, (tmp_path / "train.log").read_text()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
    assert process.returncode == -signal.SIGKILL

    run = read_json(victim / "run.json")
    assert run["status"] == "running"  # it never got to say otherwise
    assert run["progress"]["phase"] == "training"
    rows = assert_complete_files(victim)
    assert len(rows) == 1, "killed inside epoch 2"

    # Its heartbeat stopped with it: once stale, readers show `failed` (interrupted).
    beat = store.parse_iso(run["heartbeat_at"])
    status, error = store.effective_status(run, now=beat + store.HEARTBEAT_STALE_SECONDS + 1)
    assert status == "failed" and error.startswith("interrupted")
    monkeypatch.setattr(store, "HEARTBEAT_STALE_SECONDS", 0.5)
    time.sleep(1.6)  # heartbeat_at has whole seconds
    records = {r.run_id: r for r in list_runs(artifacts)}
    assert set(records) == {victim.name, bystander.name}
    record = records[victim.name]
    assert record.status == "failed" and "interrupted" in record.run["error"]
    assert not is_usable(record) and record.metrics is None

    # Results are absent, not half there; an interrupted write leaves at most a hidden
    # temporary file, which no reader lists or opens.
    names = {p.name for p in victim.iterdir()}
    assert not names & {"metrics.json", "model.keras", "predictions.npz"}
    leftovers = {n for n in names if n.startswith(".")}
    assert all(TEMPORARY_NAME.match(n) for n in leftovers), leftovers
    assert names - leftovers <= {"run.json", "config.json", "history.csv"}
    assert len(store.read_history(victim)) == len(rows)

    assert folder_digest(bystander) == before  # the other run is untouched
    assert load_run(bystander).status == "completed"
    assert json.loads((bystander / "run.json").read_text())["run_id"] == bystander.name

    # The kernel released the training slot with the process: the next training starts now.
    def busy():
        raise AssertionError("the killed run still holds the training slot")

    with training_slot(artifacts, on_wait=busy):
        pass
