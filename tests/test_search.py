"""Model 7's two-stage search (issue 3): the grid rule, resumable keras-tuner state, the
search end to end in both modes, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS_V1, require_shared
from keras_tuner.errors import FatalError

from cifar_core.cli import main
from cifar_core.data import load_dataset
from cifar_core.errors import ConfigError
from cifar_core.models.builder import build_model
from cifar_core.pipeline import RunStopped
from cifar_core.runs.store import RunWriter, list_runs, load_run
from cifar_core.search import run_model7_search
from cifar_core.search.run import adopt_for_resume
from cifar_core.search.space import (
    HYPERPARAMETERS,
    GridPlan,
    apply_values,
    plan_grid,
    stage2_hyperparameters,
)
from cifar_core.search.trials import (
    FoldResult,
    FullTrialRunner,
    TrialResult,
    make_folds,
    stage_settings,
)
from cifar_core.search.tuners import CrossValidatedTuner, stage_oracle
from cifar_core.training.config import make_config

TINY_SEARCH = dict(profile="quick", epochs=1, batch_size=32, backbone_weights=None,
                   search_mode="cached", search_trials=3, search_folds=2, search_epochs=1,
                   search_batch_size=50, grid_epochs=1, grid_batch_size=50, grid_trials=2)


def _values(units_1=128, units_2=64, dropout=0.2, learning_rate=1e-4, optimizer="adam"):
    return dict(units_1=units_1, units_2=units_2, dropout=dropout,
                learning_rate=learning_rate, optimizer=optimizer)


def test_stage2_grid_covers_what_differs_among_the_top_three():
    ranked = [("a", _values(units_1=256, dropout=0.3)),
              ("b", _values(units_1=128, dropout=0.3, optimizer="rmsprop")),
              ("c", _values(units_1=512, dropout=0.3)),
              ("d", _values(units_1=64, units_2=32))]  # fourth: not looked at
    plan = plan_grid(ranked)
    assert plan.varying == {"units_1": (128, 256, 512), "optimizer": ("adam", "rmsprop")}
    assert plan.fixed == {"units_2": 64, "dropout": 0.3, "learning_rate": 1e-4}
    assert plan.from_trials == ("a", "b", "c") and plan.size == 6
    combos = plan.combinations()
    assert len(combos) == 6 and len({json.dumps(c, sort_keys=True) for c in combos}) == 6
    assert all(set(c) == set(HYPERPARAMETERS) for c in combos)
    assert GridPlan.from_dict(plan.to_dict()) == plan

    single = plan_grid(ranked[:1])
    assert single.size == 1 and single.fixed == ranked[0][1]
    with pytest.raises(ValueError, match="no trial"):
        plan_grid([])


class ScoringRunner:
    """A deterministic score per configuration standing in for training, so the search
    logic (which values, in which order, what is kept) is tested on its own."""

    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = [], stop_at

    def run(self, values, stage, on_fold=None):
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise RunStopped("stopped by signal SIGTERM")
        self.calls.append(dict(values))
        score = values["units_1"] / 1000 + values["learning_rate"] * 10
        return TrialResult([FoldResult(score, 1.0, 1, 0.01, [0.01]) for _ in range(2)])


def test_stopped_grid_search_resumes_where_it_stopped(tmp_path):
    plan = plan_grid([("a", _values(units_1=128, learning_rate=1e-4, optimizer="adam")),
                      ("b", _values(units_1=256, learning_rate=3e-4, optimizer="rmsprop"))])
    assert plan.size == 8

    def tuner(runner):
        oracle = stage_oracle(2, stage2_hyperparameters(plan, "p2"), max_trials=None, seed=1)
        return CrossValidatedTuner(oracle, stage=2, protocol="p2", runner=runner,
                                   directory=str(tmp_path), project_name="stage2",
                                   overwrite=False)

    first = ScoringRunner(stop_at=3)
    with pytest.raises(FatalError) as stopped:
        tuner(first).search(verbose=0)
    assert "SIGTERM" in str(stopped.value) and len(first.calls) == 3

    second = ScoringRunner()
    resumed = tuner(second)
    resumed.search(verbose=0)
    done = [t for t in resumed.oracle.trials.values() if t.status == "COMPLETED"]
    keys = {json.dumps({k: t.hyperparameters.values[k] for k in HYPERPARAMETERS},
                       sort_keys=True) for t in done}
    assert len(done) == 8 and len(keys) == 8  # every combination once
    assert len(second.calls) == 5  # the interrupted one again, then the four never run
    best = resumed.oracle.get_best_trials(1)[0].hyperparameters.values
    assert (best["units_1"], best["learning_rate"]) == (256, 3e-4)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_cached_search_writes_its_trials_and_resumes_with_more(tiny_cifar100, tmp_path):
    dataset = load_dataset(tiny_cifar100)
    writer = RunWriter.create(str(tmp_path), "m7-fine", status="running")
    reports = []
    report_phase = writer.report_phase
    writer.report_phase = lambda phase, done, total, **kw: (
        reports.append((phase, done, total, kw.get("unit"))),
        report_phase(phase, done, total, **kw))
    logs: list[str] = []
    settings = {**TINY_SEARCH, "grid_folds": 1}  # stage 2 on the first fold only
    chosen = run_model7_search(make_config(7, **settings), dataset, writer=writer,
                               log=logs.append)
    rows = _rows(writer.path / "trials.csv")
    assert [r["stage"] for r in rows] == ["1", "1", "1", "2", "2"]
    assert list(rows[0]) == ["stage", "trial_id", *HYPERPARAMETERS, "fold_1", "fold_2",
                             "mean_val_accuracy", "seconds"]
    for row in rows:
        folds = [float(row["fold_1"])] + ([float(row["fold_2"])] if row["stage"] == "1" else [])
        assert row["fold_2"] or row["stage"] == "2"
        assert float(row["mean_val_accuracy"]) == pytest.approx(np.mean(folds), abs=1e-6)
        assert float(row["seconds"]) > 0
    search = json.loads((writer.path / "search.json").read_text())
    best = max((r for r in rows if r["stage"] == "2"),
               key=lambda r: float(r["mean_val_accuracy"]))
    assert search["chosen"]["trial_id"] == best["trial_id"]
    assert chosen.hidden_units == (int(best["units_1"]), int(best["units_2"]))
    assert chosen.dropout == float(best["dropout"])
    # Cached mode: the head phase runs at the searched step, the fine-tune at most at 1e-4.
    assert chosen.warm_start and chosen.head_learning_rate == float(best["learning_rate"])
    assert chosen.learning_rate == min(float(best["learning_rate"]), 1e-4)
    assert chosen.optimizer == best["optimizer"] and chosen.search_mode == "cached"
    varying = search["stages"]["2"]["plan"]["varying"]
    assert varying and set(varying) <= set(HYPERPARAMETERS)
    assert (writer.path / "tuner" / "stage1" / "oracle.json").is_file()
    # Each stage reports its trials (the folds of the one in progress as a share of it).
    stage1 = [r for r in reports if r[0] == "search_stage_1"]
    assert {(total, unit) for _, _, total, unit in stage1} == {(3, "trials")}
    dones = [done for _, done, _, _ in stage1]
    assert dones == sorted(dones) and dones[-1] == 3 and 0.5 in dones  # fold 1 of 2
    assert any(r[0] == "features" and r[1] == r[2] and r[3] == "images" for r in reports)
    final = writer.record["progress"]
    assert (final["phase"], final["done"], final["total"]) == ("search_stage_2", 2, 2)

    # Restarted with one more stage-1 trial: the three it has are kept, one new one runs.
    logs.clear()
    run_model7_search(make_config(7, **{**settings, "search_trials": 4}), dataset,
                      writer=writer, log=logs.append)
    again = _rows(writer.path / "trials.csv")
    assert [r for r in again if r["stage"] == "1"][:3] == rows[:3]
    assert len([r for r in again if r["stage"] == "1"]) == 4
    assert sum(line.startswith("search stage 1, trial") for line in logs) == 1

    with pytest.raises(ConfigError, match=r"search_epochs=1 \(now 2\)"):
        run_model7_search(make_config(7, **{**settings, "search_epochs": 2}), dataset,
                          writer=writer, log=logs.append)


@pytest.mark.slow
def test_cli_runs_model7_on_superclasses_end_to_end(tiny_cifar100, tmp_path, capsys):
    from cifar_core.analysis.trials import chosen_trial, read_trials

    code = main(["train", "--model", "7", "--labels", "coarse", "--data", str(tiny_cifar100),
                 "--profile", "quick", "--epochs", "1", "--batch-size", "32",
                 "--backbone-weights", "none", "--freeze-base", "--trials", "2", "--folds", "2",
                 "--search-epochs", "1", "--search-batch-size", "50", "--grid-epochs", "1",
                 "--grid-batch-size", "50", "--grid-trials", "1", "--artifacts", str(tmp_path)])
    assert code == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    record = load_run(run_dir)
    assert record.status == "completed" and not record.problems
    assert record.metrics["label_set"] == "coarse" and len(record.metrics["class_names"]) == 20
    config = record.config
    rows = _rows(run_dir / "trials.csv")
    chosen_row = next(r for r in rows if r["trial_id"] == config["search"]["chosen_trial_id"])
    assert config["hyperparameters"]["hidden_units"] == [int(chosen_row["units_1"]),
                                                         int(chosen_row["units_2"])]
    assert config["hyperparameters"]["search_mode"] == "cached"
    trials = read_trials(run_dir)  # the dashboard's reader finds the same chosen trial
    index, _ = chosen_trial(trials, config)
    assert trials.frame.loc[index, "trial_id"] == chosen_row["trial_id"]

    with pytest.raises(ConfigError, match="completed"):
        adopt_for_resume(record.run_id, str(tmp_path), [make_config(7, labels="coarse")])


@pytest.mark.slow
@pytest.mark.shared
def test_full_mode_trials_fine_tune_the_whole_network(tiny_cifar100):
    weights = str(require_shared(SHARED_WEIGHTS_V1))
    dataset = load_dataset(tiny_cifar100)
    config = make_config(7, **{**TINY_SEARCH, "search_mode": "full",
                               "backbone_weights": weights})
    runner = FullTrialRunner(config, dataset)
    train_pos, val_pos = runner.folds[0]
    trial_config = apply_values(config, _values(units_1=64, units_2=32))
    rows = runner.run_fold(trial_config, stage_settings(config, 1), runner.rows[train_pos],
                           runner.rows[val_pos], seed=1)
    assert len(rows) == 1 and 0 <= rows[0]["val_accuracy"] <= 1
    model = runner.last_model
    assert [model.get_layer(n).units for n in ("hidden_1", "hidden_2")] == [64, 32]
    base = model.get_layer("mobilenet_1.00_32")
    pretrained = build_model(trial_config.spec, 100, backbone_weights=weights)
    assert base.trainable
    assert not np.allclose(
        keras.ops.convert_to_numpy(base.get_layer("conv_pw_13").kernel),
        keras.ops.convert_to_numpy(
            pretrained.get_layer("mobilenet_1.00_32").get_layer("conv_pw_13").kernel))


def test_search_settings_are_checked_before_any_work(tiny_cifar100, monkeypatch):
    with pytest.raises(ConfigError, match="--folds"):
        make_config(7, search_folds=1)
    with pytest.raises(ConfigError, match="search mode"):
        make_config(7, search_mode="fast")
    with pytest.raises(ConfigError, match="--grid-trials"):
        make_config(7, grid_trials=0)
    with pytest.raises(ConfigError, match="--grid-folds"):
        make_config(7, search_folds=3, grid_folds=4)
    with pytest.raises(ConfigError, match="at most 4 folds"):
        make_folds(np.repeat(np.arange(10), 4), 5, seed=0)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
    with pytest.raises(ConfigError, match="tune --role worker"):
        run_model7_search(make_config(7, **TINY_SEARCH), load_dataset(tiny_cifar100),
                          writer=None)


def test_resume_refuses_runs_of_other_models(fixture_runs):
    model1 = next(r for r in list_runs(fixture_runs) if r.model_number == 1)
    with pytest.raises(ConfigError, match="not model 7"):
        adopt_for_resume(model1.run_id, str(fixture_runs), [make_config(7)])
    with pytest.raises(ConfigError, match="--model 7"):
        adopt_for_resume(model1.run_id, str(fixture_runs), [make_config(6)])


@pytest.mark.slow
def test_a_stopped_model7_run_resumes_from_the_cli(tiny_cifar100, tmp_path, capsys):
    from cifar_core.pipeline import execute_run

    flags = ["--data", str(tiny_cifar100), "--profile", "quick", "--epochs", "1",
             "--batch-size", "32", "--backbone-weights", "none", "--freeze-base",
             "--folds", "2", "--search-epochs", "1", "--search-batch-size", "50",
             "--grid-epochs", "1", "--grid-batch-size", "50", "--grid-trials", "1",
             "--artifacts", str(tmp_path)]
    config = make_config(7, **{**TINY_SEARCH, "freeze_base": True, "grid_trials": 1})

    def stop_after_first_trial(line: str) -> None:  # as SIGTERM would, at trial 2's start
        if line.startswith("search stage 1, trial s1-1"):
            raise RunStopped("stopped by signal SIGTERM")

    with pytest.raises(RunStopped):
        execute_run(config, data=str(tiny_cifar100), artifacts=str(tmp_path),
                    log=stop_after_first_trial)
    (stopped,) = list_runs(str(tmp_path))
    assert stopped.status == "stopped"
    first = _rows(stopped.path / "trials.csv")
    assert len(first) == 1 and first[0]["mean_val_accuracy"]
    saved_config = (stopped.path / "config.json").read_text()

    assert main(["train", "--model", "7", "--resume", stopped.run_id, "--trials", "3",
                 *flags, "--folds", "3"]) == 2
    assert "folds=2 (now 3)" in capsys.readouterr().err
    assert (stopped.path / "config.json").read_text() == saved_config  # untouched

    assert main(["train", "--model", "7", "--resume", stopped.run_id, "--trials", "3",
                 *flags]) == 0
    resumed = load_run(stopped.path)
    assert resumed.status == "completed" and resumed.run["error"] is None
    rows = _rows(stopped.path / "trials.csv")
    assert [r["stage"] for r in rows] == ["1", "1", "1", "2"]
    assert rows[0] == first[0]  # the trial it had is kept, not rerun


def test_cached_trials_run_their_hidden_layers_in_the_chosen_precision(monkeypatch):
    from cifar_core.models.builder import build_head
    from cifar_core.search.trials import head_precision

    monkeypatch.setenv("CIFAR_CORE_HEAD_PRECISION", "mixed_bfloat16")
    assert head_precision() == "mixed_bfloat16"
    head = build_head(make_config(7).spec, 10, (1024,), dtype=head_precision())
    assert head.get_layer("hidden_1").compute_dtype == "bfloat16"
    assert head.get_layer("hidden_1").variable_dtype == "float32"
    assert head.get_layer("classifier").compute_dtype == "float32"  # softmax in float32
    monkeypatch.setenv("CIFAR_CORE_HEAD_PRECISION", "float32")
    assert head_precision() == "float32"
    monkeypatch.setenv("CIFAR_CORE_HEAD_PRECISION", "float8")
    with pytest.raises(ConfigError, match="CIFAR_CORE_HEAD_PRECISION"):
        head_precision()
    monkeypatch.delenv("CIFAR_CORE_HEAD_PRECISION")
    flags = Path("/proc/cpuinfo").read_text()
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert head_precision() == ("mixed_bfloat16" if native else "float32")
