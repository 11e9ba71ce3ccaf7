"""Shared fixtures: tiny official-format data sets and run folders made by real training."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# AppTest runs app.py in this process: its stderr filter must not replace pytest's capture.
os.environ["CIFAR_CORE_RAW_STDERR"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

from cifar_archives import write_cifar100_archive, write_image_folder

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
    return write_cifar100_archive(tmp_path_factory.mktemp("data") / "cifar-100-python.tar.gz")


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory) -> Path:
    """An image-folder data set with superclasses, 3 classes, as a folder."""
    return write_image_folder(tmp_path_factory.mktemp("folder"),
                              superclasses={"cat": "animal", "dog": "animal",
                                            "ship": "vehicle"})


@pytest.fixture(scope="session")
def fixture_runs(tmp_path_factory, tiny_cifar100) -> Path:
    """An artifacts folder with completed runs made by the real pipeline on tiny data:
    models 1 and 5 (fine) and model 1 (coarse), one epoch each. Treat as read-only."""
    from cifar_core.data import load_dataset
    from cifar_core.pipeline import execute_run
    from cifar_core.training.config import make_config

    artifacts = tmp_path_factory.mktemp("fixture_artifacts")
    dataset = load_dataset(tiny_cifar100)
    for model, labels in ((1, "fine"), (5, "fine"), (1, "coarse")):
        config = make_config(model, labels=labels, profile="quick", epochs=1, batch_size=32)
        execute_run(config, dataset=dataset, artifacts=str(artifacts), log=lambda _: None)
    return artifacts


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
