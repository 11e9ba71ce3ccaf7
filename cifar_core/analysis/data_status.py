"""Is the training data on this machine? The first-launch screen asks before offering to train."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar_core import settings
from cifar_core.data.cifar100 import keras_cache_candidates, missing_data_help


@dataclass(frozen=True)
class DataStatus:
    found: bool
    location: str | None  # where the data was found
    help: str | None  # what to do when it was not: which file, where, which variable


def data_status(source: str | None = None) -> DataStatus:
    """Where training will read its data from, or how to provide it.

    ``source`` is the app's data-source setting (else ``CIFAR_CORE_DATA``). Without one,
    CIFAR-100 comes from the Keras cache; when absent there, training would download it,
    which fails offline, so the help says which file to put where.
    """
    chosen = settings.data_source(source)
    if chosen and not settings.names_cifar100(chosen):
        path = Path(chosen).expanduser()
        if path.exists():
            return DataStatus(True, str(path), None)
        return DataStatus(False, None, f"The data source {path} does not exist. "
                          + missing_data_help())
    for candidate in keras_cache_candidates():
        if candidate.exists():
            return DataStatus(True, str(candidate), None)
    return DataStatus(False, None, missing_data_help())
