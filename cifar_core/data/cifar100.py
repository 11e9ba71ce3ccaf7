"""CIFAR-100 in the official ``cifar-100-python`` format: find it, download it, read it safely.

Where it comes from, in order: an explicit path (``--data`` / ``CIFAR_CORE_DATA``) to
``cifar-100-python.tar.gz`` or its extracted ``cifar-100-python/`` folder; the Keras dataset
cache; the official download, verified by checksum. The archive is read member by member in
memory: nothing is ever extracted to disk, so hostile member names cannot write anywhere.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from cifar_core import settings
from cifar_core.checksums import file_sha256
from cifar_core.data.dataset import Dataset
from cifar_core.data.safe_pickle import safe_load_pickle
from cifar_core.errors import DataError

ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
ARCHIVE_NAME = "cifar-100-python.tar.gz"
ARCHIVE_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
FOLDER_NAME = "cifar-100-python"
MEMBERS = ("meta", "train", "test")
NUM_FINE, NUM_COARSE = 100, 20


def is_cifar100_source(path: Path) -> bool:
    """True when ``path`` looks like the official archive or its extracted folder."""
    if path.is_dir():
        return (path / "meta").is_file() or (path / FOLDER_NAME / "meta").is_file()
    if path.is_file():
        # Decided by the first member's top folder, without decompressing the data. A damaged
        # archive is not recognised here; the image-folder loader then reports it by name.
        try:
            with tarfile.open(path, "r:*") as tar:
                first = tar.next()
                return first is not None and first.name.strip("/").split("/")[0] == FOLDER_NAME
        except (tarfile.TarError, OSError, EOFError, zlib.error):
            return False
    return False


def _read_members_from_folder(folder: Path) -> dict[str, tuple[str, bytes]]:
    if (folder / FOLDER_NAME / "meta").is_file():
        folder = folder / FOLDER_NAME
    found = {}
    for name in MEMBERS:
        file = folder / name
        if not file.is_file():
            raise DataError(f"{file}: missing; a cifar-100-python folder holds meta, train, test")
        found[name] = (str(file), file.read_bytes())
    return found


def _read_members_from_archive(archive: Path) -> dict[str, tuple[str, bytes]]:
    found: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("/").split("/")
                if len(parts) >= 2 and parts[-2] == FOLDER_NAME and parts[-1] in MEMBERS:
                    if not member.isfile():
                        raise DataError(f"{archive}:{member.name}: not a regular file")
                    handle = tar.extractfile(member)
                    found[parts[-1]] = (f"{archive}:{member.name}", handle.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar.gz archive, it may be truncated or "
                        f"corrupted ({type(exc).__name__}: {exc})") from None
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise DataError(f"{archive}: not a CIFAR-100 archive, missing "
                        + ", ".join(f"{FOLDER_NAME}/{m}" for m in missing))
    return found


def _images_from_rows(rows, source: str) -> np.ndarray:
    """Official layout: uint8 rows of 3072 = 1024 R, then 1024 G, then 1024 B values."""
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        raise DataError(f"{source}: 'data' must be uint8 of shape (N, 3072), "
                        f"found {rows.dtype} {rows.shape}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _labels(batch: dict, key: str, n: int, high: int, source: str) -> np.ndarray:
    if key not in batch:
        raise DataError(f"{source}: missing '{key}'")
    labels = np.asarray(batch[key])
    if labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: '{key}' must be {n} integers, found {labels.dtype} "
                        f"{labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= high):
        raise DataError(f"{source}: '{key}' out of range [0, {high}): "
                        f"[{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def _parse(members: dict[str, tuple[str, bytes]], source: str) -> Dataset:
    meta_source, meta_bytes = members["meta"]
    meta = safe_load_pickle(meta_bytes, source=meta_source)
    fine_names = meta.get("fine_label_names")
    coarse_names = meta.get("coarse_label_names")
    if not (isinstance(fine_names, list) and len(fine_names) == NUM_FINE):
        raise DataError(f"{meta_source}: 'fine_label_names' must list {NUM_FINE} names")
    if not (isinstance(coarse_names, list) and len(coarse_names) == NUM_COARSE):
        raise DataError(f"{meta_source}: 'coarse_label_names' must list {NUM_COARSE} names")

    arrays = {}
    for split in ("train", "test"):
        split_source, raw = members[split]
        batch = safe_load_pickle(raw, source=split_source)
        if "data" not in batch:
            raise DataError(f"{split_source}: missing 'data'")
        x = _images_from_rows(batch["data"], split_source)
        fine = _labels(batch, "fine_labels", len(x), NUM_FINE, split_source)
        coarse = _labels(batch, "coarse_labels", len(x), NUM_COARSE, split_source)
        arrays[split] = (x, fine, coarse, split_source)

    # Derive fine -> coarse from the labels and check that it is a function.
    fine_to_coarse = np.full(NUM_FINE, -1, dtype=np.int64)
    for _x, fine, coarse, split_source in arrays.values():
        for f, c in set(zip(fine.tolist(), coarse.tolist(), strict=True)):
            if fine_to_coarse[f] not in (-1, c):
                raise DataError(f"{split_source}: fine class {f} ({fine_names[f]}) appears "
                                f"under two superclasses ({fine_to_coarse[f]} and {c})")
            fine_to_coarse[f] = c
    unseen = np.flatnonzero(fine_to_coarse < 0)
    if len(unseen):
        raise DataError(f"{source}: fine classes {unseen.tolist()[:10]} never appear, so their "
                        "superclass is unknown")

    x_train, y_train, _, _ = arrays["train"]
    x_test, y_test, _, _ = arrays["test"]
    return Dataset(name="cifar100", source=source, x_train=x_train, y_train=y_train,
                   x_test=x_test, y_test=y_test, class_names=fine_names,
                   superclass_names=coarse_names, fine_to_coarse=fine_to_coarse)


def load_cifar100_from(path: str | os.PathLike) -> Dataset:
    """Read an official archive (``.tar.gz``) or extracted folder at ``path``."""
    path = Path(path).expanduser()
    if path.is_dir():
        members = _read_members_from_folder(path)
    elif path.is_file():
        members = _read_members_from_archive(path)
    else:
        raise DataError(f"{path}: no such file or folder")
    return _parse(members, str(path))


def keras_cache_candidates() -> list[Path]:
    """Where ``keras.datasets.cifar100.load_data()`` leaves the data, across Keras versions."""
    root = settings.keras_datasets_dir()
    return [
        root / "cifar-100-python-target_extracted" / FOLDER_NAME,  # Keras >= 3.5
        root / "cifar-100-python-target",  # the downloaded archive itself
        root / FOLDER_NAME,  # Keras 2 extracted folder
        root / ARCHIVE_NAME,
    ]


def missing_data_help() -> str:
    """What a user without network access must do: shown by the CLI and the app."""
    target = settings.keras_datasets_dir() / ARCHIVE_NAME
    return (
        f"CIFAR-100 is needed: the file '{ARCHIVE_NAME}' ({ORIGIN}, SHA-256 "
        f"{ARCHIVE_SHA256[:16]}...). Put it at {target}, or anywhere and point at it with "
        f"--data PATH or the environment variable {settings.ENV_DATA}=PATH. An image-folder "
        "data set (train/<class>/*, test/<class>/*) can be given the same way."
    )


def download_cifar100(dest: Path | None = None, *, origin: str = ORIGIN,
                      expected_sha256: str = ARCHIVE_SHA256, progress=None) -> Path:
    """Download the official archive to ``dest`` and verify its checksum.

    The bytes go to a temporary file beside ``dest`` that is renamed only once complete and
    verified, so a failed or interrupted download never leaves a partial archive behind.
    ``progress`` (optional) is called with (bytes_done, bytes_total).
    """
    dest = dest or settings.keras_datasets_dir() / ARCHIVE_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(origin, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        actual = file_sha256(Path(tmp_name))
        if expected_sha256 and actual != expected_sha256:
            raise DataError(f"downloaded {origin} has SHA-256 {actual}, expected "
                            f"{expected_sha256}; the file was discarded")
        os.replace(tmp_name, dest)
        return dest
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"could not download CIFAR-100 ({type(exc).__name__}: {exc}). "
                        + missing_data_help()) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def load_cifar100(*, allow_download: bool = True, progress=None) -> Dataset:
    """CIFAR-100 from the Keras cache, else downloaded (with checksum) into it."""
    for candidate in keras_cache_candidates():
        if candidate.exists():
            return load_cifar100_from(candidate)
    if not allow_download:
        raise DataError(missing_data_help())
    return load_cifar100_from(download_cifar100(progress=progress))
