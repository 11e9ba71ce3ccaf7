"""Write small data sets in the exact official formats, for tests.

``write_cifar100_archive`` produces ``cifar-100-python.tar.gz`` with ``cifar-100-python/{meta,
train,test}`` as *Python-2* pickles, byte for byte the way the official files are encoded:
keys and class names are py2 ``str`` (BINSTRING opcodes), ``data`` is a numpy uint8 array of
shape (N, 3072) in R, G, B planes reconstructed through ``numpy.core.multiarray``, labels are
lists of ints. Python 3's own pickler cannot emit py2 strings, hence the small writer below.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


class Py2Pickler:
    """Protocol-2 pickles as Python 2.7 + numpy wrote them (only what CIFAR files hold)."""

    def __init__(self):
        self.out = io.BytesIO()

    def dumps(self, obj) -> bytes:
        self.out.write(b"\x80\x02")
        self._save(obj)
        self.out.write(b".")
        return self.out.getvalue()

    def _global(self, module: str, name: str) -> None:
        self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def _str(self, value: bytes) -> None:
        if len(value) < 256:
            self.out.write(b"U" + bytes([len(value)]) + value)
        else:
            self.out.write(b"T" + struct.pack("<i", len(value)) + value)

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out.write(b"K" + bytes([value]))
        else:
            self.out.write(b"J" + struct.pack("<i", value))

    def _tuple(self, items) -> None:
        self.out.write(b"(")
        for item in items:
            self._save(item)
        self.out.write(b"t")

    def _save(self, obj) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True or obj is False:
            w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, str):
            self._str(obj.encode("latin1"))
        elif isinstance(obj, bytes):
            self._str(obj)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            w(b"]")
            if obj:
                w(b"(")
                for item in obj:
                    self._save(item)
                w(b"e")
        elif isinstance(obj, dict):
            w(b"}")
            if obj:
                w(b"(")
                for key, value in obj.items():
                    self._save(key)
                    self._save(value)
                w(b"u")
        elif isinstance(obj, np.ndarray):
            self._ndarray(obj)
        else:
            raise TypeError(type(obj))

    def _ndarray(self, array: np.ndarray) -> None:
        w = self.out.write
        self._global("numpy.core.multiarray", "_reconstruct")
        self._global("numpy", "ndarray")
        self._tuple((0,))
        self._str(b"b")
        w(b"\x87R")  # TUPLE3, REDUCE: _reconstruct(ndarray, (0,), 'b')
        w(b"(")  # state: (version, shape, dtype, is_fortran, raw data)
        self._int(1)
        self._tuple(tuple(array.shape))
        self._global("numpy", "dtype")
        self._tuple((array.dtype.str[1:], 0, 1))
        w(b"R")
        self._tuple((3, "|" if array.dtype.itemsize == 1 else "<", None, None, None, -1, -1, 0))
        w(b"b")  # BUILD the dtype
        w(b"\x89")  # not Fortran order
        self._str(np.ascontiguousarray(array).tobytes())
        w(b"t")
        w(b"b")  # BUILD the array


def py2_dumps(obj) -> bytes:
    return Py2Pickler().dumps(obj)


FINE_PER_COARSE = 5  # CIFAR-100: 20 superclasses x 5 classes


def synthetic_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Noisy images whose mean colour and a bright quadrant depend on the class: learnable."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    palette = np.random.default_rng(1234).integers(20, 236, size=(num_classes, 3))
    images = rng.normal(0, 25, size=(n, 32, 32, 3)) + palette[labels][:, None, None, :]
    for i, label in enumerate(labels):
        q = label % 4
        images[i, (q // 2) * 16:(q // 2) * 16 + 16, (q % 2) * 16:(q % 2) * 16 + 16] += 60
    return np.clip(images, 0, 255).astype(np.uint8)


def cifar100_arrays(train_per_class: int = 5, test_per_class: int = 2, seed: int = 0):
    fine_train = np.repeat(np.arange(100), train_per_class)
    fine_test = np.repeat(np.arange(100), test_per_class)
    fine_to_coarse = np.arange(100) % 20  # each superclass gets 5 fine classes
    return {
        "x_train": synthetic_images(fine_train, 100, seed),
        "y_train": fine_train,
        "x_test": synthetic_images(fine_test, 100, seed + 1),
        "y_test": fine_test,
        "fine_to_coarse": fine_to_coarse,
        "fine_names": [f"class_{i:02d}" for i in range(100)],
        "coarse_names": [f"super_{i:02d}" for i in range(20)],
    }


def _batch(x: np.ndarray, fine: np.ndarray, coarse: np.ndarray, name: str) -> dict:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # R, G, B planes
    return {
        "filenames": [f"img_{i:05d}.png" for i in range(len(x))],
        "batch_label": f"{name} batch 1 of 1",
        "fine_labels": [int(v) for v in fine],
        "coarse_labels": [int(v) for v in coarse],
        "data": rows,
    }


def write_cifar100_archive(path: Path, *, train_per_class: int = 5, test_per_class: int = 2,
                           seed: int = 0, members: dict[str, bytes] | None = None,
                           extracted: bool = False) -> Path:
    """Write a small CIFAR-100 archive (or, with ``extracted``, its folder) at ``path``.

    ``members`` overrides the bytes of ``meta``/``train``/``test`` (for corrupted cases).
    """
    a = cifar100_arrays(train_per_class, test_per_class, seed)
    f2c = a["fine_to_coarse"]
    files = {
        "meta": py2_dumps({"fine_label_names": a["fine_names"],
                           "coarse_label_names": a["coarse_names"]}),
        "train": py2_dumps(_batch(a["x_train"], a["y_train"], f2c[a["y_train"]], "training")),
        "test": py2_dumps(_batch(a["x_test"], a["y_test"], f2c[a["y_test"]], "testing")),
    }
    files.update(members or {})
    path = Path(path)
    if extracted:
        folder = path / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return path
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_image_folder(root: Path, *, classes=("cat", "dog", "ship"), train_per_class: int = 6,
                       test_per_class: int = 3, size: int = 32, fmt: str = "PNG",
                       superclasses: dict[str, str] | None = None, archive: bool = False,
                       top: str = "images") -> Path:
    """Write ``<top>/{train,test}/<class>/*`` (optionally as ``<root>.tar.gz``)."""
    root = Path(root)
    base = root / top
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(len(classes)), per_class)
        images = synthetic_images(labels, len(classes), seed=7 if split == "train" else 8)
        for i, (label, image) in enumerate(zip(labels, images, strict=True)):
            folder = base / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(image)
            if size != 32:
                img = img.resize((size, size))
            img.save(folder / f"{i:04d}.{fmt.lower()}", fmt)
    if superclasses:
        (base / "superclasses.json").write_text(json.dumps(superclasses))
    if archive:
        tar_path = root.with_suffix(".tar.gz")
        with tarfile.open(tar_path, "w:gz") as tar:
            tar.add(base, arcname=top)
        return tar_path
    return base
