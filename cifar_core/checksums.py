"""SHA-256 of files and folders, read in 1 MiB blocks (archives and models are large).

One place for the data archive's check (``cifar_core.data.cifar100``), the exports' manifest
and the MLflow mirror's change detection.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def _feed(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of one file's bytes (the value ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    _feed(digest, Path(path))
    return digest.hexdigest()


def tree_sha256(folder: str | Path) -> str:
    """Hex SHA-256 of a folder's files: each relative name and its bytes, in sorted order, so
    a renamed, added or changed file changes it."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        _feed(digest, file)
    return digest.hexdigest()
