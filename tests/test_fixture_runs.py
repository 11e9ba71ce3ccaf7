"""The committed run folders (tests/fixtures/runs) that the fast tests read: they read cleanly,
hold nothing of the machine that made them, were trained on the archive tests/cifar_archives.py
still writes, and keep the files and JSON structure today's pipeline writes (regenerate them
with ``python tests/fixtures/make_fixture_runs.py`` when the last test fails)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_fixture_runs import (
    DATA_SOURCE,
    FIXTURE_ROOT,
    LEFT_OUT,
    NEUTRAL,
    RUN_CONFIGS,
    neutralise,
)

from cifar_core.analysis import images as ia
from cifar_core.errors import DataError
from cifar_core.runs.store import SCHEMA_VERSION, list_runs

REPO_ROOT = Path(__file__).resolve().parents[1]
JSON_FILES = ("run.json", "config.json", "metrics.json")


def _by_kind(artifacts: Path) -> dict:
    return {(r.model_number, r.label_set): r for r in list_runs(artifacts)}


def test_committed_runs_read_as_completed_with_only_the_left_out_model_missing():
    runs = _by_kind(FIXTURE_ROOT)
    assert sorted(runs) == sorted(RUN_CONFIGS)
    for record in runs.values():
        assert record.status == "completed"
        assert record.problems == [f"{name}: missing" for name in LEFT_OUT]
        assert record.run["schema_version"] == record.config["schema_version"] == \
            record.metrics["schema_version"] == SCHEMA_VERSION
        assert record.config["profile"] == "quick" and record.metrics["training"]["epochs_run"] == 1
        assert len(ia.load_predictions(record.path)["y_true"]) == record.metrics["num_test"]


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_committed_runs_hold_no_machine_paths_or_identity():
    for run_dir in sorted((FIXTURE_ROOT / "runs").iterdir()):
        for name in JSON_FILES:
            text = (run_dir / name).read_text(encoding="utf-8")
            assert str(REPO_ROOT) not in text and str(Path.home()) not in text, run_dir / name
            paths = [s for s in _strings(json.loads(text)) if s.startswith(("/", "~"))
                     or s[1:3] in (":\\", ":/")]
            assert paths == [], run_dir / name
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        assert config["dataset"]["source"] == DATA_SOURCE
        assert config["environment"]["git"]["commit"] == NEUTRAL
        assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["pid"] is None


def test_committed_runs_were_trained_on_the_archive_the_tests_write(tiny_cifar100):
    """Their images load from the regenerated archive given as the data source, and only
    then: the recorded source is no path, and the content hash must match."""
    for record in list_runs(FIXTURE_ROOT):
        with pytest.raises(DataError, match="not found"):
            ia.run_dataset(record)
        dataset = ia.run_dataset(record, fallback_source=str(tiny_cifar100))
        assert dataset.content_hash == record.config["dataset"]["sha256"]
        assert len(dataset.x_test) == record.metrics["num_test"]


def _structure(value):
    """The JSON's keys and value kinds, all the way down, without the values."""
    if isinstance(value, dict):
        return {key: _structure(item) for key, item in value.items()}
    if isinstance(value, list):
        kinds = {json.dumps(_structure(item), sort_keys=True) for item in value}
        return sorted(kinds)
    if value is None or isinstance(value, (bool, str)):
        return type(value).__name__
    return "number"


def _npz_layout(file: Path) -> dict:
    with np.load(file, allow_pickle=False) as data:
        return {name: (data[name].dtype.str, data[name].shape) for name in data.files}


@pytest.mark.slow
def test_committed_runs_match_what_the_pipeline_writes_today(trained_runs, tmp_path):
    """Train the fixture's runs afresh, pass them through the generator's own rewrite, and
    compare with the committed ones: the same files, JSON structure, schema version, history
    columns and prediction arrays (not the numbers, which a retrain may change)."""
    shutil.copytree(trained_runs / "runs", tmp_path / "runs")
    neutralise(tmp_path)
    fresh, committed = _by_kind(tmp_path), _by_kind(FIXTURE_ROOT)
    assert sorted(fresh) == sorted(committed)
    for kind, record in committed.items():
        new = fresh[kind].path
        # tensorboard/ is a viewing copy of the other files (`cifar-core tensorboard-export`
        # writes it for any run), so the committed fixture leaves it out.
        assert sorted(p.name for p in new.iterdir() if p.name != "tensorboard") == \
            sorted(p.name for p in record.path.iterdir()), kind
        for name in JSON_FILES:
            def read(folder, name=name):
                return json.loads((folder / name).read_text(encoding="utf-8"))
            assert _structure(read(new)) == _structure(read(record.path)), (kind, name)
            assert read(new)["schema_version"] == read(record.path)["schema_version"]
        with open(new / "history.csv", newline="") as a, \
                open(record.path / "history.csv", newline="") as b:
            assert next(csv.reader(a)) == next(csv.reader(b)), kind
        assert _npz_layout(new / "predictions.npz") == \
            _npz_layout(record.path / "predictions.npz"), kind
