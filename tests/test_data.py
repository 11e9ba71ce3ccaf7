"""Data loading: official CIFAR-100 archives, image folders, safety, the split."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cifar_archives import (
    cifar100_arrays,
    py2_dumps,
    write_cifar100_archive,
    write_image_folder,
)
from conftest import SHARED_IMAGES, require_shared

from cifar_core import settings
from cifar_core.data import load_dataset, stratified_split
from cifar_core.data.cifar100 import download_cifar100, load_cifar100_from
from cifar_core.data.safe_pickle import safe_load_pickle
from cifar_core.errors import DataError, UnsafePickleError


def test_official_archive_loads_pixels_labels_names_and_mapping(tiny_cifar100):
    ds = load_dataset(tiny_cifar100)
    expected = cifar100_arrays()
    assert ds.x_train.shape == (500, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (200, 32, 32, 3)
    np.testing.assert_array_equal(ds.x_train, expected["x_train"])
    np.testing.assert_array_equal(ds.y_test, expected["y_test"])
    assert ds.class_names == expected["fine_names"]
    assert ds.superclass_names == expected["coarse_names"]
    np.testing.assert_array_equal(ds.fine_to_coarse, expected["fine_to_coarse"])
    np.testing.assert_array_equal(ds.y_train_coarse, expected["fine_to_coarse"][ds.y_train])


def test_extracted_folder_and_archive_have_the_same_identity(tmp_path, tiny_cifar100):
    folder = write_cifar100_archive(tmp_path / "extracted", extracted=True)
    assert load_dataset(folder).content_hash == load_dataset(tiny_cifar100).content_hash
    # The folder itself or its parent are both accepted.
    assert load_dataset(folder / "cifar-100-python").num_classes == 100


def test_data_path_from_environment_variable(monkeypatch, tiny_cifar100):
    monkeypatch.setenv(settings.ENV_DATA, str(tiny_cifar100))
    assert load_dataset().source == str(tiny_cifar100)


def test_keras_cache_is_used_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = tmp_path / "keras" / "datasets" / "cifar-100-python-target"
    cached.parent.mkdir(parents=True)
    write_cifar100_archive(cached)
    ds = load_dataset(allow_download=False)
    assert ds.source == str(cached)


def test_missing_data_without_download_says_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(DataError) as info:
        load_dataset(allow_download=False)
    message = str(info.value)
    assert "cifar-100-python.tar.gz" in message and settings.ENV_DATA in message


def test_failed_download_leaves_no_partial_file(tmp_path):
    dest = tmp_path / "ds" / "cifar-100-python.tar.gz"
    with pytest.raises(DataError, match="could not download CIFAR-100"):
        download_cifar100(dest, origin="http://127.0.0.1:9/cifar-100-python.tar.gz")
    assert list(dest.parent.iterdir()) == []


def test_download_verifies_checksum_and_discards_a_wrong_file(tmp_path):
    source = write_cifar100_archive(tmp_path / "served.tar.gz")
    dest = tmp_path / "ds" / "cifar-100-python.tar.gz"
    with pytest.raises(DataError, match="SHA-256"):
        download_cifar100(dest, origin=source.as_uri(), expected_sha256="0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert download_cifar100(dest, origin=source.as_uri(), expected_sha256=digest) == dest
    assert load_cifar100_from(dest).num_classes == 100


class _Exploit:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Exploit(marker)}, protocol=2)
    with pytest.raises(UnsafePickleError) as info:
        safe_load_pickle(payload, source="evil/train")
    assert "evil/train" in str(info.value) and "system" in str(info.value)
    assert not marker.exists()
    # The same payload inside an archive: refused, naming the member.
    archive = write_cifar100_archive(tmp_path / "evil.tar.gz", members={"train": payload})
    with pytest.raises(UnsafePickleError, match="cifar-100-python/train"):
        load_dataset(archive)
    assert not marker.exists()


def test_truncated_archive_gets_a_clear_error_naming_the_file(tmp_path, tiny_cifar100):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(tiny_cifar100.read_bytes()[: tiny_cifar100.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.tar\.gz"):
        load_cifar100_from(truncated)


@pytest.mark.parametrize("case", ["wrong_shape", "label_range", "two_superclasses"])
def test_inconsistent_contents_are_refused(tmp_path, case):
    a = cifar100_arrays()
    f2c = a["fine_to_coarse"]
    rows = a["x_train"].transpose(0, 3, 1, 2).reshape(500, 3072)
    fine = [int(v) for v in a["y_train"]]
    coarse = [int(f2c[v]) for v in a["y_train"]]
    if case == "wrong_shape":
        rows = rows[:, :3000]
    elif case == "label_range":
        fine[3] = 100
    else:
        coarse[0] = (coarse[0] + 1) % 20
    train = py2_dumps({"data": rows, "fine_labels": fine, "coarse_labels": coarse})
    archive = write_cifar100_archive(tmp_path / f"{case}.tar.gz", members={"train": train})
    with pytest.raises(DataError, match=r"cifar-100-python/train|superclass"):
        load_dataset(archive)


def test_image_folder_as_folder_and_archive_with_superclasses(tmp_path):
    mapping = {"cat": "animal", "dog": "animal", "ship": "vehicle"}
    folder = write_image_folder(tmp_path / "a", superclasses=mapping)
    archive = write_image_folder(tmp_path / "b", superclasses=mapping, archive=True)
    from_folder, from_archive = load_dataset(folder), load_dataset(archive)
    assert from_folder.class_names == ["cat", "dog", "ship"]
    assert from_folder.superclass_names == ["animal", "vehicle"]
    assert from_folder.fine_to_coarse.tolist() == [0, 0, 1]
    assert from_folder.x_train.shape == (18, 32, 32, 3)
    assert from_folder.x_test.shape == (9, 32, 32, 3)
    assert from_folder.content_hash == from_archive.content_hash


def test_image_folder_resizes_other_sizes_and_reads_other_formats(tmp_path):
    folder = write_image_folder(tmp_path / "big", size=64, fmt="JPEG")
    ds = load_dataset(folder)
    assert ds.x_train.shape[1:] == (32, 32, 3) and ds.superclass_names is None


def test_image_folder_archive_with_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escape/train/cat/0.png")
        data = b"x"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="outside the archive"):
        load_dataset(archive)
    assert not (tmp_path.parent / "escape").exists()


def test_stratified_split_has_exact_per_class_counts_and_is_seeded():
    labels = np.repeat(np.arange(100), 500)
    split = stratified_split(labels, seed=42)
    assert np.bincount(labels[split.train_idx]).tolist() == [400] * 100
    assert np.bincount(labels[split.val_idx]).tolist() == [100] * 100
    assert not set(split.train_idx) & set(split.val_idx)
    again = stratified_split(labels, seed=42)
    other = stratified_split(labels, seed=7)
    np.testing.assert_array_equal(split.val_idx, again.val_idx)
    assert not np.array_equal(split.val_idx, other.val_idx)


@pytest.mark.parametrize("fraction, side, size", [(0.2, "validation", 40), (0.8, "training", 40)])
def test_a_split_too_small_for_every_class_on_both_sides_says_which_and_why(fraction, side,
                                                                            size):
    labels = np.repeat(np.arange(100), 2)  # 200 images, 100 classes
    with pytest.raises(DataError, match=f"leaves {size} for {side}, fewer than the 100 classes"):
        stratified_split(labels, seed=0, validation_fraction=fraction)
    split = stratified_split(labels, seed=0, validation_fraction=0.5)  # one of each per side
    assert np.bincount(labels[split.val_idx]).tolist() == [1] * 100


@pytest.mark.shared
@pytest.mark.slow  # decodes the 60,000 real JPEGs (about 12 s)
def test_real_cifar10_images_from_shared():
    ds = load_dataset(require_shared(SHARED_IMAGES), show_progress=False)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.num_classes == 10 and np.bincount(ds.y_train).tolist() == [5000] * 10


def test_the_official_cifar100_is_named_by_nothing_or_its_names():
    from cifar_core.settings import names_cifar100

    assert names_cifar100(None) and names_cifar100("CIFAR-100") and names_cifar100("cifar100")
    assert not names_cifar100("cifar10-images.tar.gz") and not names_cifar100("")
