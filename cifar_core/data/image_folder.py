"""Image-folder data sets: ``train/<class>/*`` and ``test/<class>/*``, a folder or a tar.gz.

An optional ``superclasses.json`` beside ``train/`` maps each class to a superclass. Images
may be in any format Pillow reads and are resized to 32x32 where they are not. Archives are
read in memory: nothing is extracted, and member names that climb out of the archive
(``../``, absolute paths) or links are refused. Decoded arrays are cached on disk, keyed by
the source's content, so the second load of 60,000 JPEGs takes a second, not a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from cifar_core import settings
from cifar_core.data.dataset import Dataset
from cifar_core.data.images import load_image_array
from cifar_core.errors import DataError, ImageError

SPLITS = ("train", "test")
SUPERCLASSES_FILE = "superclasses.json"
CACHE_FORMAT = 1  # bump when the decoded layout or preprocessing changes


def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")):
        raise DataError(f"{archive}: refused member '{name}': it points outside the archive")
    return path


def _locate(parts: tuple[str, ...]) -> tuple[tuple[str, ...], str, str] | None:
    """(root prefix, split, class) for ``<root>/<split>/<class>/<file>``, else None."""
    if len(parts) >= 3 and parts[-3] in SPLITS:
        return parts[:-3], parts[-3], parts[-2]
    return None


def _iter_archive(archive: Path, *, read: bool = True
                  ) -> Iterator[tuple[tuple[str, ...], bytes | None, str]]:
    """Yield (parts, bytes, label) for every regular file; links are refused.

    ``read=False`` yields None for the bytes: names only, for counting.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = _check_member_name(archive, member.name).parts
                if member.issym() or member.islnk():
                    raise DataError(f"{archive}: refused link member '{member.name}'")
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read() if read else None
                yield parts, data, f"{archive}:{member.name}"
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar archive, it may be truncated or "
                        f"corrupted ({type(exc).__name__}: {exc})") from None


def _iter_folder(folder: Path) -> Iterator[tuple[tuple[str, ...], bytes | None, str]]:
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if root not in target.parents:
                raise DataError(f"{path}: refused symlink pointing outside {folder}")
        if path.is_file():
            yield path.relative_to(folder).parts, None, str(path)


def source_fingerprint(path: Path) -> str:
    """A cheap content key: the archive's bytes, or a folder's file names, sizes and times."""
    digest = hashlib.sha256(f"format{CACHE_FORMAT}".encode())
    if path.is_file():
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def count_training_files(path: Path) -> int:
    """The number of training images of the image-folder data set at ``path``, undecoded:
    from the decode cache when this archive was loaded before, else from file names (a
    folder) or tar headers (an archive). Refuses the members the loader refuses."""
    if path.is_file():
        cached = settings.cache_dir() / "datasets" / f"{source_fingerprint(path)[:32]}.npz"
        try:
            with np.load(cached, allow_pickle=False) as npz:
                return int(npz["y_train"].shape[0])
        except Exception:  # absent or unreadable: count the names
            pass
    entries = _iter_archive(path, read=False) if path.is_file() else _iter_folder(path)
    return sum(1 for parts, _, _ in entries
               if (located := _locate(parts)) is not None and located[1] == "train")


def _decode(path: Path, show_progress: bool) -> Dataset:
    entries = _iter_archive(path) if path.is_file() else _iter_folder(path)
    roots: set[tuple[str, ...]] = set()
    superclass_map: dict | None = None
    files: dict[str, list[tuple[str, str, bytes | None]]] = {s: [] for s in SPLITS}
    for parts, data, label in entries:
        located = _locate(parts)
        if located:
            root, split, class_name = located
            roots.add(root)
            files[split].append((class_name, label, data))
        elif parts[-1] == SUPERCLASSES_FILE:
            raw = data if data is not None else Path(label).read_bytes()
            try:
                superclass_map = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{label}: not valid JSON ({exc})") from None
            if not isinstance(superclass_map, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in superclass_map.items()):
                raise DataError(f"{label}: must map class name -> superclass name")
    if len(roots) > 1:
        raise DataError(f"{path}: found several train/ and test/ folders: "
                        + ", ".join("/".join(r) or "." for r in sorted(roots)))
    for split in SPLITS:
        if not files[split]:
            raise DataError(f"{path}: no images under {split}/<class>/; an image-folder data "
                            "set needs train/<class>/* and test/<class>/*")

    class_names = sorted({c for c, _, _ in files["train"]})
    unknown = sorted({c for c, _, _ in files["test"]} - set(class_names))
    if unknown:
        raise DataError(f"{path}: test classes without training images: {unknown[:5]}")
    class_index = {c: i for i, c in enumerate(class_names)}

    arrays = {}
    total = sum(len(v) for v in files.values())
    bar = tqdm(total=total, desc=f"Decoding {path.name}", unit="img",
               disable=not show_progress, mininterval=1.0)
    for split in SPLITS:
        entries_sorted = sorted(files[split], key=lambda e: e[1])
        x = np.empty((len(entries_sorted), 32, 32, 3), dtype=np.uint8)
        y = np.empty(len(entries_sorted), dtype=np.int64)
        for i, (class_name, label, data) in enumerate(entries_sorted):
            try:
                x[i] = load_image_array(data if data is not None else label, name=label)
            except ImageError as exc:
                raise DataError(str(exc)) from None
            y[i] = class_index[class_name]
            bar.update()
        arrays[split] = (x, y)
    bar.close()

    superclass_names = fine_to_coarse = None
    if superclass_map is not None:
        missing = [c for c in class_names if c not in superclass_map]
        if missing:
            raise DataError(f"{path}: {SUPERCLASSES_FILE} has no superclass for {missing[:5]}")
        superclass_names = sorted(set(superclass_map[c] for c in class_names))
        fine_to_coarse = np.array([superclass_names.index(superclass_map[c])
                                   for c in class_names], dtype=np.int64)
    name = path.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    return Dataset(name=name, source=str(path), x_train=arrays["train"][0],
                   y_train=arrays["train"][1], x_test=arrays["test"][0],
                   y_test=arrays["test"][1], class_names=class_names,
                   superclass_names=superclass_names, fine_to_coarse=fine_to_coarse)


def _save_cache(file: Path, ds: Dataset) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=file.parent)
    os.close(fd)
    try:
        meta = {"name": ds.name, "class_names": ds.class_names,
                "superclass_names": ds.superclass_names}
        np.savez(tmp, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
                 y_test=ds.y_test, meta=np.array(json.dumps(meta)),
                 fine_to_coarse=ds.fine_to_coarse if ds.fine_to_coarse is not None
                 else np.array([], dtype=np.int64))
        os.replace(tmp, file)
    except OSError:
        pass  # the cache is an optimisation: a read-only or full disk must not stop training
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_cache(file: Path, source: str) -> Dataset | None:
    try:
        with np.load(file, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            f2c = npz["fine_to_coarse"]
            return Dataset(name=meta["name"], source=source, x_train=npz["x_train"],
                           y_train=npz["y_train"], x_test=npz["x_test"], y_test=npz["y_test"],
                           class_names=meta["class_names"],
                           superclass_names=meta["superclass_names"],
                           fine_to_coarse=f2c if len(f2c) else None)
    except Exception:
        return None  # unreadable cache: decode again


def load_image_folder(path: str | os.PathLike, *, use_cache: bool = True,
                      show_progress: bool = True) -> Dataset:
    """Load an image-folder data set (folder or tar archive), via the decode cache."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    cache_file = None
    if use_cache:
        key = source_fingerprint(path)
        cache_file = settings.cache_dir() / "datasets" / f"{key[:32]}.npz"
        if cache_file.is_file():
            cached = _load_cache(cache_file, str(path))
            if cached is not None:
                return cached
    ds = _decode(path, show_progress)
    if cache_file is not None:
        _save_cache(cache_file, ds)
    return ds
