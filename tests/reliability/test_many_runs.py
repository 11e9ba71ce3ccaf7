"""The dashboard with 50 run folders: every page renders, every run is listed.

The 50 folders are copies of the three real tiny runs (tests/conftest.py's trained_runs, with
their models, so that Classify has one to load), each under its own valid run id
(many_runs.clone_runs). Render times with 50 runs are measured by benchmarks/reliability.py,
not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from many_runs import clone_runs
from streamlit.testing.v1 import AppTest

from cifar_core.runs.store import list_runs

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ("overview", "train", "tuning", "classes", "confusion", "augmentation", "classify",
         "present")
RUNS = 50


@pytest.fixture(scope="module")
def fifty_runs(tmp_path_factory, trained_runs) -> Path:
    artifacts = tmp_path_factory.mktemp("fifty")
    sources = sorted((trained_runs / "runs").iterdir())
    clone_runs(sources, artifacts, RUNS)
    return artifacts


@pytest.mark.slow  # fifty_runs trains
def test_fifty_copies_are_fifty_distinct_completed_runs(fifty_runs):
    records = list_runs(fifty_runs)
    assert len({r.run_id for r in records}) == RUNS
    assert all(r.status == "completed" and r.problems == [] for r in records)
    assert all(r.run["run_id"] == r.run_id for r in records)


@pytest.mark.slow
def test_every_page_renders_with_fifty_runs(fifty_runs):
    newest = list_runs(fifty_runs)[0]
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["artifacts_dir"] = str(fifty_runs)
    at.run()
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.title, page  # the page got past its guard and drew itself
        picker = at.sidebar.selectbox(key="run_id")
        assert len(picker.options) == RUNS and picker.value == newest.run_id
    at.switch_page("pages/overview.py").run()
    table = at.dataframe[0].value
    assert len(table) == RUNS and set(table["status"]) == {"completed"}
    # One run counts per (model, labels): the newest copy of each of the three sources.
    assert table["counts"].sum() == 3
    counting = at.get("expander")
    assert counting and len(at.selectbox) >= 3  # a choice per model with several runs
