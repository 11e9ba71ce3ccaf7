"""The cifar-core command line, end to end in a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.cli import main
from cifar_core.runs.store import load_run


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_core.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_train_runs_predict_round_trip(tmp_path, tiny_cifar100):
    artifacts = tmp_path / "artifacts"
    result = cli("train", "--model", "1", "--data", str(tiny_cifar100), "--profile", "quick",
                 "--epochs", "1", "--validation-fraction", "0.25", "--artifacts", str(artifacts))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == artifacts / "runs"
    record = load_run(run_dir)
    assert record.status == "completed" and record.problems == []
    assert record.config["hyperparameters"]["validation_fraction"] == 0.25
    assert record.metrics["training"]["num_validation"] == 125  # 500 images, 25% held out
    for name in ("run.json", "config.json", "history.csv", "metrics.json", "predictions.npz",
                 "model.keras"):
        assert (run_dir / name).is_file(), name

    listed = cli("runs", "--json", env={"CIFAR_CORE_ARTIFACTS": str(artifacts)})
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["run_id"] == run_dir.name and summary["status"] == "completed"
    assert summary["test_top1"] == record.metrics["test_top1"]

    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    by_id = cli("predict", str(good), str(bad), "--run", run_dir.name, "--top", "3", "--json",
                "--artifacts", str(artifacts))
    assert by_id.returncode == 1  # one file failed, the other was classified
    errors = [line for line in by_id.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.png" in errors[0] and "not an image" in errors[0]
    results = json.loads(by_id.stdout)["results"]
    assert len(results[0]["top"]) == 3 and results[0]["superclass"].startswith("super_")
    assert results[0]["top"][0]["class"] in record.metrics["class_names"]
    assert "error" in results[1]
    by_path = cli("predict", str(good), "--run", str(run_dir))
    assert by_path.returncode == 0 and "superclass" in by_path.stdout


@pytest.mark.parametrize("args", [
    ["train", "--model", "1", "--epochs", "0"],
    ["train", "--model", "1", "--batch-size", "-5"],
    ["train", "--model", "1", "--labels", "medium"],
])
def test_bad_values_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unknown_model_is_refused_before_loading_data(capsys, tmp_path):
    code = main(["train", "--model", "12", "--data", str(tmp_path / "does-not-exist")])
    assert code == 2
    assert "unknown model 12" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.1"])
def test_a_validation_fraction_outside_0_1_is_refused_before_loading_data(fraction, capsys,
                                                                         tmp_path):
    code = main(["train", "--model", "1", "--validation-fraction", fraction,
                 "--data", str(tmp_path / "does-not-exist")])
    assert code == 2
    assert "validation fraction must lie in (0, 1)" in capsys.readouterr().err


def test_predict_with_unknown_run_is_a_clear_error(capsys, tmp_path):
    code = main(["predict", "x.png", "--run", "nope", "--artifacts", str(tmp_path)])
    assert code == 2 and "no run 'nope'" in capsys.readouterr().err


def test_runs_lists_fixture_runs(capsys, fixture_runs):
    assert main(["runs", "--artifacts", str(fixture_runs)]) == 0
    out = capsys.readouterr().out
    assert out.count("completed") == 3 and "coarse" in out
