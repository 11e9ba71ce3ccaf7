"""Run folders: unique ids, atomic files, status lifecycle, read-back of damaged folders."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from cifar_core.errors import RunFolderError
from cifar_core.runs import store
from cifar_core.runs.files import atomic_write_json
from cifar_core.runs.store import RunWriter, list_runs, load_run, resolve_run_ref


def test_run_ids_are_unique_when_many_start_in_the_same_second(tmp_path):
    paths: list[Path] = []
    lock = threading.Lock()

    def claim():
        path = store.claim_run_folder(tmp_path / "runs", "m1-fine")
        with lock:
            paths.append(path)

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in paths}) == 20


def test_atomic_write_leaves_no_temporary_files_and_replaces_whole(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})  # not valid JSON: refused
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_status_lifecycle_and_stale_heartbeat(tmp_path):
    writer = RunWriter.create(str(tmp_path), "m1-fine")
    assert load_run(writer.path).status == "queued"
    writer.set_status("running")
    assert load_run(writer.path).status == "running"
    # A running run whose heartbeat is old is read back as failed (interrupted).
    writer.record["heartbeat_at"] = "2020-01-01T00:00:00+00:00"
    atomic_write_json(writer.path / "run.json", writer.record)
    record = load_run(writer.path)
    assert record.status == "failed" and "interrupted" in record.run["error"]


@pytest.mark.slow  # trained_runs trains: the committed runs have no model.keras to remove
def test_damaged_and_foreign_run_folders_are_listed_with_reasons(tmp_path, trained_runs):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(trained_runs / "runs", root)
    good = sorted(p.name for p in root.iterdir())
    newer, corrupt, no_model = (root / good[0]), (root / good[1]), (root / good[2])
    run = json.loads((newer / "run.json").read_text())
    (newer / "run.json").write_text(json.dumps({**run, "schema_version": 99}))
    (corrupt / "metrics.json").write_text("{not json")
    (no_model / "model.keras").unlink()
    (root / "garbage").mkdir()  # no run.json at all
    records = {r.run_id: r for r in list_runs(str(tmp_path))}
    assert records[newer.name].status == "unreadable"
    assert "newer" in records[newer.name].problems[0]
    assert any("metrics.json" in p for p in records[corrupt.name].problems)
    assert records[corrupt.name].metrics is None
    assert any("model.keras" in p for p in records[no_model.name].problems)
    assert records["garbage"].status == "unreadable"


@pytest.mark.parametrize("ref", ["../x", "..", "/etc", "a/../../b", "runs/../../etc"])
def test_run_references_cannot_leave_the_artifacts_root(tmp_path, ref):
    (tmp_path / "runs").mkdir()
    with pytest.raises(RunFolderError):
        resolve_run_ref(ref, str(tmp_path))


def test_symlinked_run_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    (tmp_path / "art" / "runs").mkdir(parents=True)
    os.symlink(outside, tmp_path / "art" / "runs" / "sneaky")
    with pytest.raises(RunFolderError, match="link"):
        resolve_run_ref("sneaky", str(tmp_path / "art"))
    assert all(r.run_id != "sneaky" for r in list_runs(str(tmp_path / "art")))


def test_unwritable_artifacts_root_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root ignores permissions: use a file in the way
        blocker.write_text("")
        root = blocker / "runs"
    else:
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
    with pytest.raises(RunFolderError, match="cannot create"):
        store.claim_run_folder(root, "m1-fine")
