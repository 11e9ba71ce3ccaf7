"""Run folders from older or newer versions, or with damaged files: listed with a reason.

tests/test_runs.py covers a newer schema, a corrupt metrics.json, a missing model.keras and a
folder without run.json; tests/test_app.py a few more on the pages. This adds an older
schema, a missing or corrupt history.csv, a truncated model.keras, a corrupt config.json
and a completed run without metrics.json, and checks every page with each of them, and the
Classify page with an upload for the truncated model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hostile_files import valid_images
from streamlit.testing.v1 import AppTest

from cifar_core.analysis.runs import is_usable
from cifar_core.runs.store import list_runs, runs_root

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ("overview", "train", "tuning", "classes", "confusion", "augmentation", "classify",
         "present")


def _copy(source: Path, artifacts: Path, run_id: str) -> Path:
    target = runs_root(artifacts) / run_id
    shutil.copytree(source, target)
    run = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**run, "run_id": run_id}))
    return target


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, trained_runs) -> Path:
    """Damaged copies of a model-5 run beside three intact runs, all with their models: trained
    afresh (trained_runs), as the committed fixture runs leave model.keras out."""
    artifacts = tmp_path_factory.mktemp("damaged")
    shutil.copytree(trained_runs / "runs", runs_root(artifacts))
    source = next(r.path for r in list_runs(trained_runs)
                  if r.model_number == 5 and r.label_set == "fine")
    older = _copy(source, artifacts, "20400101-000001-m5-fine")
    run = json.loads((older / "run.json").read_text())
    (older / "run.json").write_text(json.dumps({**run, "schema_version": 0}))
    (_copy(source, artifacts, "20400101-000002-m5-fine") / "history.csv").unlink()
    (_copy(source, artifacts, "20400101-000003-m5-fine") / "history.csv").write_text(
        "epoch,loss,accuracy\n1,0.5,garb")
    model = _copy(source, artifacts, "20400101-000004-m5-fine") / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    (_copy(source, artifacts, "20400101-000005-m5-fine") / "config.json").write_text("{\"sch")
    (_copy(source, artifacts, "20400101-000006-m5-fine") / "metrics.json").unlink()
    return artifacts


EXPECTED = {  # run id: (status, the start of its first problem, usable by the pages)
    "20400101-000001-m5-fine": ("unreadable", "run.json: schema version 0", False),
    "20400101-000002-m5-fine": ("completed", "history.csv: missing", True),
    "20400101-000003-m5-fine": ("completed", None, True),  # history is only drawn for jobs
    "20400101-000004-m5-fine": ("completed", None, True),  # found when the model is loaded
    "20400101-000005-m5-fine": ("completed", "config.json: unreadable", False),
    "20400101-000006-m5-fine": ("completed", "metrics.json: missing", False),
}


@pytest.mark.slow  # damaged trains
def test_each_damaged_folder_is_listed_with_its_reason_and_the_others_load(damaged):
    records = {r.run_id: r for r in list_runs(damaged)}
    assert len(records) == 3 + len(EXPECTED)
    for run_id, (status, problem, usable) in EXPECTED.items():
        record = records[run_id]
        assert record.status == status, run_id
        if problem:
            assert record.problems and record.problems[0].startswith(problem), record.problems
        assert is_usable(record) == usable, run_id
    intact = [r for r in records.values() if r.run_id not in EXPECTED]
    assert all(r.status == "completed" and r.problems == [] for r in intact)


@pytest.mark.slow
@pytest.mark.parametrize("run_id", [r for r, (_, _, usable) in EXPECTED.items() if usable])
def test_every_page_renders_with_a_damaged_run_chosen(damaged, run_id):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["artifacts_dir"] = str(damaged)
    at.session_state["run_id"] = run_id
    at.run()
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.sidebar.selectbox(key="run_id").value == run_id
    at.switch_page("pages/overview.py").run()
    table = at.dataframe[0].value.set_index("run id")
    for other, (status, problem, _) in EXPECTED.items():
        assert table.loc[other, "status"] == status
        if problem:
            assert table.loc[other, "problems"].startswith(problem)


@pytest.mark.slow
def test_classify_with_a_truncated_model_says_so(damaged):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["artifacts_dir"] = str(damaged)
    at.session_state["run_id"] = "20400101-000004-m5-fine"
    at.run()
    at.switch_page("pages/classify.py").run()
    at.file_uploader[0].set_value(("photo.jpg", valid_images()["photo.jpg"], "image/jpeg"))
    at.run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("This run's model cannot be used:")
    assert "not a loadable Keras model" in error.value
    assert not [m for m in at.metric if m.label == "Prediction"]
