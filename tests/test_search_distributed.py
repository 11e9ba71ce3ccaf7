"""keras-tuner's distributed mode: a chief and two workers on 127.0.0.1 share one search."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_core.runs.store import list_runs

SEARCH_FLAGS = ["--profile", "quick", "--backbone-weights", "none", "--freeze-base",
                "--search-mode", "cached", "--trials", "4", "--folds", "2",
                "--search-epochs", "1", "--search-batch-size", "50", "--grid-epochs", "1",
                "--grid-batch-size", "50", "--grid-trials", "3"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    handle = open(log, "w")  # noqa: SIM115 (closed with the process below)
    process = subprocess.Popen([sys.executable, "-m", "cifar_core.cli", "tune", *args],
                               stdout=handle, stderr=subprocess.STDOUT, env=env)
    process.log_handle = handle
    return process


@pytest.mark.slow
def test_chief_and_two_workers_share_the_trials_and_finish_the_run(tiny_cifar100, tmp_path):
    port = _free_port()
    address = ["--oracle-ip", "127.0.0.1", "--oracle-port", str(port)]
    common = ["--data", str(tiny_cifar100), *SEARCH_FLAGS, *address]
    artifacts = tmp_path / "artifacts"
    processes = {
        "chief": _start(["--role", "chief", "--min-workers", "2", "--epochs", "1",
                         "--batch-size", "32", "--artifacts", str(artifacts), *common],
                        tmp_path / "chief.log"),
        "w1": _start(["--role", "worker", "--tuner-id", "w1", *common], tmp_path / "w1.log"),
        "w2": _start(["--role", "worker", "--tuner-id", "w2", *common], tmp_path / "w2.log"),
        # Same chief, other settings: refused before it takes a trial.
        "odd": _start(["--role", "worker", "--tuner-id", "odd", *common, "--folds", "3"],
                      tmp_path / "odd.log"),
    }
    try:
        codes = {name: p.wait(timeout=400) for name, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.log_handle.close()
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in processes}
    assert codes == {"chief": 0, "w1": 0, "w2": 0, "odd": 2}, logs
    assert "other settings" in logs["odd"]

    (record,) = list_runs(artifacts)
    assert record.status == "completed" and not record.problems, record.problems
    with open(record.path / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == ["1"] * 4 + ["2"] * 3
    assert all(r["mean_val_accuracy"] for r in rows)  # every trial finished and scored
    owners = json.loads((record.path / "search.json").read_text())["owners"]
    assert set(owners) == {r["trial_id"] for r in rows}
    assert set(owners.values()) == {"w1", "w2"}  # both workers ran trials
    ran = {name: int(re.search(r"ran (\d+) trial", logs[name])[1]) for name in ("w1", "w2")}
    assert ran["w1"] + ran["w2"] == len(rows) and min(ran.values()) >= 1
    assert record.config["search"]["chosen_trial_id"] in owners
    assert str(record.path) == logs["chief"].strip().splitlines()[-1]
