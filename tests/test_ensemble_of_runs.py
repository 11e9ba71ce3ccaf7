"""benchmarks/ensemble_of_runs.py on run folders made by the real pipeline (fixture_runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cifar_core.runs.store import list_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ensemble_of_runs


def test_single_runs_reproduce_their_metrics_and_pairs_are_averaged(fixture_runs, capsys):
    fine = [r for r in list_runs(fixture_runs) if r.label_set == "fine"]
    assert ensemble_of_runs.main(["--runs", *(r.run_id for r in fine),
                                  "--artifacts", str(fixture_runs)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    best = summary["best_by_size"]
    assert max(r.metrics["test_top1"] for r in fine) == pytest.approx(best["1"]["test_top1"],
                                                                      abs=1e-4)
    assert sorted(best["2"]["runs"]) == sorted(r.run_id for r in fine)
    assert 0.0 <= best["2"]["test_top1"] <= 1.0 and summary["test_images"] == 200
    for record in fine:  # one line per single run, with its own accuracy
        assert f"{100 * record.metrics['test_top1']:.2f}%  {record.run_id}" in out


def test_runs_tested_on_other_data_are_refused(fixture_runs, tmp_path):
    import shutil

    fine = [r for r in list_runs(fixture_runs) if r.label_set == "fine"]
    for record in fine:
        shutil.copytree(record.path, tmp_path / "runs" / record.run_id)
    config_file = tmp_path / "runs" / fine[1].run_id / "config.json"
    config = json.loads(config_file.read_text())
    config["dataset"]["sha256"] = "0" * 64
    config_file.write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="not tested on the same data"):
        ensemble_of_runs.main(["--runs", *(r.run_id for r in fine),
                               "--artifacts", str(tmp_path)])
