"""Shared fixtures: tiny official-format data sets and run folders made by real training
(committed in tests/fixtures/runs, or trained afresh by ``trained_runs``)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# AppTest runs app.py in this process: its stderr filter must not replace pytest's capture.
os.environ["CIFAR_CORE_RAW_STDERR"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

from cifar_archives import write_image_folder
from fixtures.make_fixture_runs import FIXTURE_ROOT, train_fixture_runs, write_tiny_archive

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CIFAR_CORE_SHARED", REPO_ROOT.parent / "shared"))
SHARED_IMAGES = SHARED / "data" / "cifar10-images.tar.gz"
SHARED_WEIGHTS_V1 = SHARED / "weights" / "mobilenet_v1_1.0_imagenet_notop.weights.h5"


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """Keep tests away from the user's caches and artifacts."""
    base = tmp_path_factory.mktemp("env")
    saved = {k: os.environ.get(k) for k in ("CIFAR_CORE_CACHE", "KERAS_HOME",
                                            "CIFAR_CORE_ARTIFACTS", "CIFAR_CORE_DATA")}
    os.environ["CIFAR_CORE_CACHE"] = str(base / "cache")
    os.environ["KERAS_HOME"] = str(base / "keras")
    os.environ["CIFAR_CORE_ARTIFACTS"] = str(base / "artifacts")
    os.environ.pop("CIFAR_CORE_DATA", None)
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_cifar100(tmp_path_factory) -> Path:
    """A CIFAR-100 archive in the official format: 500 train and 200 test images."""
    return write_tiny_archive(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A loaded CIFAR-100 data set in the official format with 2 training images and 1 test
    image per class (200 + 100): for runs whose cost grows with the images (MobileNet at
    model 8's 144x144). A stratified split of it needs a validation fraction of 0.5 (each
    class on both sides). Treat as read-only."""
    from cifar_archives import write_cifar100_archive

    from cifar_core.data import load_dataset

    path = tmp_path_factory.mktemp("small") / "cifar-100-python.tar.gz"
    return load_dataset(write_cifar100_archive(path, train_per_class=2, test_per_class=1))


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory) -> Path:
    """An image-folder data set with superclasses, 3 classes, as a folder."""
    return write_image_folder(tmp_path_factory.mktemp("folder"),
                              superclasses={"cat": "animal", "dog": "animal",
                                            "ship": "vehicle"})


@pytest.fixture(scope="session")
def fixture_runs(tmp_path_factory, tiny_cifar100) -> Path:
    """An artifacts folder holding a copy of the committed runs (tests/fixtures/runs: models 1
    and 5 fine and model 1 coarse, one epoch each, made by the real pipeline on the tiny
    archive), whose ``dataset.source`` names this session's ``tiny_cifar100``, as a run trained
    here would. No ``model.keras`` (see tests/fixtures/make_fixture_runs.py): a test that loads
    a model takes ``trained_runs``. Nothing trains. Shared by the session: treat as read-only
    (copy a run into ``tmp_path`` to change it)."""
    artifacts = tmp_path_factory.mktemp("fixture_artifacts")
    shutil.copytree(FIXTURE_ROOT / "runs", artifacts / "runs")
    for config_file in sorted((artifacts / "runs").glob("*/config.json")):
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["dataset"]["source"] = str(tiny_cifar100)
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return artifacts


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, tiny_cifar100) -> Path:
    """The fixture's runs trained afresh by the real pipeline on ``tiny_cifar100`` (about 15 s
    on 2 cores), with their models: for tests that load a model, need every file of a
    completed run, or check the committed fixture against today's code. Tests that use it
    train, so they are ``slow``. Treat as read-only."""
    return train_fixture_runs(tmp_path_factory.mktemp("trained_artifacts"), tiny_cifar100)


@pytest.fixture
def jobs_without_processes(monkeypatch) -> list[str]:
    """Jobs are queued for real (run folder, job.json) but no process is started, and none is
    relaunched, so nothing trains: each job stays ``queued`` with its process gone. Returns
    the run ids "launched"."""
    import cifar_core.jobs
    from cifar_core.jobs import launch as job_launch
    from cifar_core.jobs import records as job_records
    from cifar_core.jobs import recovery as job_recovery

    launched: list[str] = []

    def launch_nothing(path: Path, job: dict, lock_fd: int) -> dict:
        job = {**job, "pid": None}
        job_records.write_job_record(path, job)
        launched.append(path.name)
        return job

    monkeypatch.setattr(job_launch, "start_worker", launch_nothing)
    for module in (job_recovery, cifar_core.jobs):
        monkeypatch.setattr(module, "resume_queued_jobs", lambda artifacts=None: [])
    return launched


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs {path.name} from the project's "
                    "shared assets folder (a 'shared' folder beside the checkout, or "
                    "CIFAR_CORE_SHARED=DIR pointing at one that holds data/ and weights/)")
    return path
