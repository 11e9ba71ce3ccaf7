"""A training typed in a terminal and a queued app job share the one training slot."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cifar_core.jobs.locks import training_slot
from cifar_core.runs.store import list_runs


@pytest.mark.slow
def test_cli_training_waits_for_the_slot_then_runs(tmp_path, tiny_cifar100):
    artifacts = tmp_path / "artifacts"
    command = [sys.executable, "-m", "cifar_core.cli", "train", "--model", "1", "--profile",
               "quick", "--epochs", "1", "--data", str(tiny_cifar100), "--artifacts",
               str(artifacts)]
    with training_slot(str(artifacts)):  # as a running app job holds it
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=os.environ.copy())
        time.sleep(8)  # long enough to import TensorFlow and reach the slot
        assert process.poll() is None
        assert list_runs(str(artifacts)) == []  # it has not started a run meanwhile
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "waiting for the training" in out
    [record] = list_runs(str(artifacts))
    assert record.status == "completed"
