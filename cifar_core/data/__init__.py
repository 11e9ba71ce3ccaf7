"""Data: CIFAR-100 archives, image-folder data sets, the report's split, image decoding."""

from __future__ import annotations

import os
from pathlib import Path

from cifar_core import settings
from cifar_core.data.cifar100 import is_cifar100_source, load_cifar100, load_cifar100_from
from cifar_core.data.dataset import Dataset, Split, stratified_split
from cifar_core.data.image_folder import load_image_folder
from cifar_core.errors import DataError

__all__ = ["Dataset", "Split", "load_dataset", "stratified_split"]


def load_dataset(source: str | os.PathLike | None = None, *, allow_download: bool = True,
                 show_progress: bool = True) -> Dataset:
    """Load the data set named by ``source`` (or ``CIFAR_CORE_DATA``), CIFAR-100 by default.

    ``source`` may be the official CIFAR-100 archive or folder, or an image-folder data set
    (folder or tar.gz). Without one: the Keras cache, then the official download.
    """
    chosen = settings.data_source(source)
    if chosen is None or chosen.lower() in ("cifar100", "cifar-100"):
        return load_cifar100(allow_download=allow_download)
    path = Path(chosen).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (from --data or "
                        f"{settings.ENV_DATA})")
    if is_cifar100_source(path):
        return load_cifar100_from(path)
    return load_image_folder(path, show_progress=show_progress)
