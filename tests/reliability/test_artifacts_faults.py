"""The artifacts folder missing, unwritable or full: clear errors, nothing half-written."""

from __future__ import annotations

import errno

import pytest

from cifar_core.cli import main
from cifar_core.data import load_dataset
from cifar_core.errors import RunFolderError
from cifar_core.pipeline import execute_run
from cifar_core.runs import store
from cifar_core.runs.store import list_runs, load_run
from cifar_core.training.config import make_config


@pytest.fixture(scope="module")
def tiny(tiny_cifar100):
    return load_dataset(tiny_cifar100)


@pytest.mark.slow  # trains
def test_missing_artifacts_folder_is_created(tmp_path, tiny):
    root = tmp_path / "not" / "yet" / "there"
    writer = execute_run(make_config(1, profile="quick", epochs=1), dataset=tiny,
                         artifacts=str(root), log=lambda _: None)
    assert writer.path.parent == root / "runs" and load_run(writer.path).status == "completed"


def test_unwritable_artifacts_folder_is_a_one_line_cli_error(tmp_path, tiny_cifar100, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the artifacts folder should be")
    code = main(["train", "--model", "1", "--profile", "quick", "--epochs", "1",
                 "--data", str(tiny_cifar100), "--artifacts", str(blocker)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot create the runs folder" in err and "Traceback" not in err


@pytest.mark.slow  # trains
def test_full_disk_while_saving_fails_the_run_without_presenting_results(tmp_path, tiny,
                                                                         monkeypatch):
    real_save = store.atomic_save

    def full_disk(path, writer):
        if path.name == "predictions.npz":  # the model saved fine, then the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, writer)

    monkeypatch.setattr(store, "atomic_save", full_disk)
    with pytest.raises(RunFolderError, match="No space left on device"):
        execute_run(make_config(1, profile="quick", epochs=1), dataset=tiny,
                    artifacts=str(tmp_path), log=lambda _: None)
    [record] = list_runs(str(tmp_path))
    assert record.status == "failed" and "No space left" in record.run["error"]
    assert record.metrics is None and not (record.path / "metrics.json").exists()
    assert not [p for p in record.path.iterdir() if p.name.startswith(".")]  # no temp files
