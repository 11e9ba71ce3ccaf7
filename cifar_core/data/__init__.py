"""Data: CIFAR-100 archives, image-folder data sets, the report's split, image decoding."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cifar_core import settings
from cifar_core.data.cifar100 import (
    FOLDER_NAME,
    is_cifar100_source,
    keras_cache_candidates,
    load_cifar100,
    load_cifar100_from,
)
from cifar_core.data.dataset import Dataset, Split, stratified_split, training_split_size
from cifar_core.data.image_folder import count_training_files, load_image_folder
from cifar_core.errors import DataError

__all__ = ["Dataset", "Split", "count_training_images", "load_dataset", "stratified_split",
           "training_split_size"]

OFFICIAL_CIFAR100_TRAIN_IMAGES = 50_000  # what a download of the official archive holds


def load_dataset(source: str | os.PathLike | None = None, *, allow_download: bool = True,
                 show_progress: bool = True) -> Dataset:
    """Load the data set named by ``source`` (or ``CIFAR_CORE_DATA``), CIFAR-100 by default.

    ``source`` may be the official CIFAR-100 archive or folder, or an image-folder data set
    (folder or tar.gz). Without one: the Keras cache, then the official download.
    """
    chosen = settings.data_source(source)
    if settings.names_cifar100(chosen):
        return load_cifar100(allow_download=allow_download)
    path = Path(chosen).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (from --data or "
                        f"{settings.ENV_DATA})")
    if is_cifar100_source(path):
        return load_cifar100_from(path)
    return load_image_folder(path, show_progress=show_progress)


def count_training_images(source: str | os.PathLike | None = None) -> int:
    """How many training images ``load_dataset(source)`` returns, found cheaply: names or
    tar headers for image folders, the train pickle for CIFAR-100 (read once per process
    and file version). Lets a job's batch size be checked before it is queued.
    Raises ``DataError`` where the source cannot be read.
    """
    chosen = settings.data_source(source)
    if settings.names_cifar100(chosen):
        path = next((c for c in keras_cache_candidates() if c.exists()), None)
        if path is None:
            return OFFICIAL_CIFAR100_TRAIN_IMAGES  # training would download the official one
    else:
        path = Path(chosen).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and not is_cifar100_source(path):
        return count_training_files(path)  # file names only: cheap enough every time
    stamp = path
    if path.is_dir():  # an extracted CIFAR-100 folder: its train pickle decides
        stamp = next((p for p in (path / "train", path / FOLDER_NAME / "train")
                      if p.is_file()), path)
    stat = stamp.stat()
    return _count_once(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _count_once(path: str, size: int, mtime_ns: int) -> int:
    """Keyed by size and time too: a replaced file is counted again."""
    if is_cifar100_source(Path(path)):
        return len(load_cifar100_from(path).y_train)
    return count_training_files(Path(path))
