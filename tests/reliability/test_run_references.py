"""Run ids and paths from the UI and the CLI never reach a file outside the artifacts folder.

The dashboard reads no query parameters and takes no run path from the user: the run picker
offers the runs ``list_runs`` found, and a run id in the session (the picker's state, the
Overview's per-model choices) is only ever matched against that list. These tests plant
hostile values there ('../x', absolute paths, the name of a symlinked run folder) and run
folders that are, or contain, links to a folder outside; every page must render, and an
audit hook (tests/reliability/file_access.py) proves no file outside was opened or listed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from file_access import watch
from streamlit.testing.v1 import AppTest

from cifar_core.cli import main
from cifar_core.errors import RunFolderError
from cifar_core.inference import Classifier, load_model_safely
from cifar_core.runs.store import list_runs, load_run, resolve_run_ref, runs_root

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ("overview", "train", "tuning", "classes", "confusion", "augmentation", "classify",
         "present")
LINKED_RUN = "20991231-235959-m1-fine"  # a symlink in runs/ to a valid run outside
LINKED_METRICS = "20991231-235958-m5-fine"  # a real folder whose metrics.json is a link
LINKED_MODEL = "20991231-235957-m1-fine"  # a real folder whose model.keras is a link
LINKED_RUN_JSON = "20991231-235956-m1-fine"  # a real folder whose run.json is a link
ELSEWHERE = "20991231-235955-m1-fine"  # a valid run folder outside, with no link to it


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    run = json.loads((target / "run.json").read_text())
    run.update(run_id=target.name, created_at="2099-12-31T23:59:00+00:00")  # the newest
    (target / "run.json").write_text(json.dumps(run))
    return target


def _replace_with_link(folder: Path, name: str, outside: Path) -> None:
    """Move ``folder/name`` outside and leave a link to it in its place."""
    moved = outside / f"{folder.name}-{name}"
    shutil.move(folder / name, moved)
    (folder / name).symlink_to(moved)


# planted copies trained_runs (fresh training): the links need runs with every file, their
# model.keras too, which the committed fixture runs leave out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted(tmp_path_factory, trained_runs) -> tuple[Path, Path]:
    """(artifacts, outside): three valid runs beside four that lead outside."""
    base = tmp_path_factory.mktemp("refs")
    artifacts, outside = base / "artifacts", base / "outside"
    shutil.copytree(trained_runs / "runs", runs_root(artifacts))
    outside.mkdir()
    sources = {r.model_number: r.path for r in list_runs(trained_runs)
               if r.label_set == "fine"}
    _copy(sources[1], outside / LINKED_RUN)
    _copy(sources[1], outside / ELSEWHERE)
    (runs_root(artifacts) / LINKED_RUN).symlink_to(outside / LINKED_RUN)
    _replace_with_link(_copy(sources[5], runs_root(artifacts) / LINKED_METRICS),
                       "metrics.json", outside)
    _replace_with_link(_copy(sources[1], runs_root(artifacts) / LINKED_MODEL),
                       "model.keras", outside)
    _replace_with_link(_copy(sources[1], runs_root(artifacts) / LINKED_RUN_JSON),
                       "run.json", outside)
    return artifacts, outside


def test_the_watch_sees_reads_through_links(planted):
    """The audit hook is the evidence below: it must see a read that does happen."""
    artifacts, outside = planted
    with watch(outside) as touched:
        (runs_root(artifacts) / LINKED_MODEL / "model.keras").read_bytes()
    assert touched and touched[0][0] == "open"


def test_the_library_lists_links_as_unreadable_and_reads_nothing_outside(planted):
    artifacts, outside = planted
    with watch(outside) as touched:
        records = {r.run_id: r for r in list_runs(artifacts)}
        assert LINKED_RUN not in records  # a symlinked run folder is not a run
        for run_id in (LINKED_METRICS, LINKED_MODEL, LINKED_RUN_JSON):
            assert records[run_id].status == "unreadable"
            assert records[run_id].problems[0].startswith("links refused, not read")
        assert sum(r.status == "completed" for r in records.values()) == 3
        with pytest.raises(RunFolderError, match="unreadable, not completed"):
            Classifier(runs_root(artifacts) / LINKED_MODEL)
        with pytest.raises(RunFolderError, match="a link; refused"):
            load_model_safely(runs_root(artifacts) / LINKED_MODEL / "model.keras")
        assert load_run(runs_root(artifacts) / LINKED_RUN).status == "unreadable"
    assert touched == []


@pytest.mark.parametrize("ref", [LINKED_RUN, f"runs/{LINKED_RUN}", "OUTSIDE", "../x", "/etc",
                                 "runs/../../outside", f"../outside/{ELSEWHERE}",
                                 f"runs/../../outside/{ELSEWHERE}"])
def test_cli_run_references_stay_inside_the_artifacts_folder(planted, ref, capsys,
                                                             monkeypatch):
    artifacts, outside = planted
    monkeypatch.chdir(artifacts)  # relative references start here
    ref = str(outside / ELSEWHERE) if ref == "OUTSIDE" else ref
    with watch(outside) as touched:
        with pytest.raises(RunFolderError):
            resolve_run_ref(ref, artifacts)
        image = artifacts / "image.png"
        image.write_bytes(b"")
        assert main(["predict", str(image), "--run", ref, "--artifacts", str(artifacts)]) == 2
        assert main(["train", "--model", "7", "--resume", ref,
                     "--artifacts", str(artifacts)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 2 and "Traceback" not in err
    assert touched == []


def test_a_path_inside_the_runs_folder_still_works(planted):
    artifacts, outside = planted
    run = next(r for r in list_runs(artifacts) if r.status == "completed")
    assert resolve_run_ref(str(run.path), artifacts) == runs_root(artifacts) / run.run_id
    assert resolve_run_ref(run.run_id, artifacts) == runs_root(artifacts) / run.run_id
    # Without --artifacts, the path `train` printed names its own artifacts folder...
    assert resolve_run_ref(str(run.path)) == runs_root(artifacts) / run.run_id
    # ...which must be a runs/ folder: a run folder copied anywhere else is refused.
    with watch(outside) as touched, pytest.raises(RunFolderError, match="refused"):
        resolve_run_ref(str(outside / ELSEWHERE))
    assert touched == []


HOSTILE_SESSIONS = {
    "parent": {"run_id": "../x"},
    "absolute": {"run_id": "/etc"},
    "outside-path": {"run_id": "OUTSIDE"},
    "linked-run": {"run_id": LINKED_RUN, "counting_choices": {"1-fine": LINKED_RUN,
                                                              "5-fine": LINKED_METRICS}},
    "linked-files": {"run_id": LINKED_MODEL},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOSTILE_SESSIONS))
def test_hostile_run_ids_in_the_session_never_reach_outside(planted, case):
    artifacts, outside = planted
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["artifacts_dir"] = str(artifacts)
    for key, value in HOSTILE_SESSIONS[case].items():
        at.session_state[key] = str(outside / ELSEWHERE) if value == "OUTSIDE" else value
    valid = {r.run_id for r in list_runs(artifacts) if r.status == "completed"}
    with watch(outside) as touched:
        at.run()
        for page in PAGES:
            at.switch_page(f"pages/{page}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
            picker = at.sidebar.selectbox(key="run_id")
            assert len(picker.options) == len(valid)  # labels end with the run id
            assert all(any(o.endswith(v) for v in valid) for o in picker.options)
            assert picker.value in valid  # the hostile value was replaced by a real run
    assert touched == []
    at.switch_page("pages/overview.py").run()
    table = at.dataframe[0].value.set_index("run id")
    assert LINKED_RUN not in table.index
    for run_id in (LINKED_METRICS, LINKED_MODEL, LINKED_RUN_JSON):
        assert table.loc[run_id, "status"] == "unreadable"
        assert "links refused" in table.loc[run_id, "problems"]
    assert table.loc[sorted(valid), "counts"].any()
