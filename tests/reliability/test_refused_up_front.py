"""Out-of-range settings are refused before any run folder is claimed or job started.

tests/test_jobs.py covers epochs 0, an unknown model, an unknown label set, an unknown
override and a missing data file through the job queue; this adds what it leaves out, above
all a batch size larger than the data's training split, which can only be checked against
the data: the queue counts the training images cheaply (names, tar headers, the train
pickle) before it claims a folder, and the CLI checks after loading, before claiming one.
"""

from __future__ import annotations

import numpy as np
import pytest
from cifar_archives import write_cifar100_archive, write_image_folder

from cifar_core.cli import main
from cifar_core.data import (
    count_training_images,
    load_dataset,
    stratified_split,
    training_split_size,
)
from cifar_core.errors import ConfigError
from cifar_core.jobs import submit_job
from cifar_core.jobs.request import build_request
from cifar_core.runs.store import runs_root

TINY_TRAIN = 500  # tests/cifar_archives.py: 5 images of each of 100 classes
TINY_SPLIT = 400  # 20% held out for validation


@pytest.mark.parametrize("size", [10, 18, 99, 400, 500, 1001, 50_000])
@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.3])
def test_training_split_size_matches_the_split(size, fraction):
    labels = np.arange(size) % 2
    split = stratified_split(labels, seed=1, validation_fraction=fraction)
    assert training_split_size(size, fraction) == len(split.train_idx)


def test_training_images_are_counted_without_decoding(tiny_cifar100, tmp_path, monkeypatch):
    assert count_training_images(tiny_cifar100) == TINY_TRAIN
    extracted = write_cifar100_archive(tmp_path / "extracted", extracted=True)
    assert count_training_images(extracted) == TINY_TRAIN
    folder = write_image_folder(tmp_path / "folder", train_per_class=7)
    archive = write_image_folder(tmp_path / "archive", train_per_class=7, archive=True)
    assert count_training_images(folder) == count_training_images(archive) == 21
    assert len(load_dataset(archive, show_progress=False).y_train) == 21
    # The second count of an archive comes from the decode cache the load just wrote.
    monkeypatch.setattr("cifar_core.data.image_folder._iter_archive",
                        lambda *a, **k: pytest.fail("read the archive again"))
    from cifar_core.data.image_folder import count_training_files

    assert count_training_files(archive) == 21
    # No data set given and none cached: training downloads the official 50,000 images.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    assert count_training_images(None) == 50_000


@pytest.mark.parametrize(("overrides", "message"), [
    ({"batch_size": TINY_SPLIT + 1}, f"batch size {TINY_SPLIT + 1} is larger than the "
                                     f"{TINY_SPLIT} training images"),
    ({"batch_size": 100_000}, "is larger than the 400 training images"),
    ({"batch_size": 0}, "batch-size must be a positive integer"),
    ({"epochs": -3}, "epochs must be a positive integer"),
    ({"epochs": 10_001}, "epochs must be at most 10000"),
    ({"patience": -1}, "patience must be a non-negative integer"),
    ({"learning_rate": 5.0}, "learning rate must lie in"),
    ({"seed": -1}, "seed must be an integer"),
])
def test_the_job_queue_refuses_before_claiming_a_folder(tmp_path, tiny_cifar100, overrides,
                                                        message):
    artifacts = tmp_path / "artifacts"
    with pytest.raises(ConfigError, match=message):
        submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=overrides)
    assert not runs_root(artifacts).exists()


def test_the_largest_batch_that_fits_is_accepted(tiny_cifar100, tiny_image_folder):
    request = build_request(model=1, data=str(tiny_cifar100),
                            overrides={"batch_size": TINY_SPLIT})
    assert request.config.batch_size == TINY_SPLIT
    # The image folder has 18 training images, 14 after the split.
    build_request(model=1, data=str(tiny_image_folder), overrides={"batch_size": 14})
    with pytest.raises(ConfigError, match="larger than the 14 training images"):
        build_request(model=1, data=str(tiny_image_folder),
                              overrides={"batch_size": 15})


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "1", "--batch-size", str(TINY_SPLIT + 1)],
     f"batch size {TINY_SPLIT + 1} is larger than the {TINY_SPLIT} training images"),
    (["--model", "2", "--labels", "coarse", "--batch-size", "4096"], "larger than the 400"),
    (["--all", "--batch-size", "1000"], "larger than the 400"),  # all refused, none trained
    (["--model", "9"], "unknown model 9"),
])
def test_the_cli_refuses_before_claiming_a_folder(tmp_path, tiny_cifar100, args, message,
                                                  capsys):
    artifacts = tmp_path / "artifacts"
    code = main(["train", *args, "--profile", "quick", "--data", str(tiny_cifar100),
                 "--artifacts", str(artifacts)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not runs_root(artifacts).exists()
