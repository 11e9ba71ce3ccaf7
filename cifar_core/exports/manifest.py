"""``<run>/exports/manifest.json``: what each export of a run is, and whether it passed parity.

::

    {"schema_version": 1,
     "exports": {"litert-int8": {"file": "model-litert-int8.tflite", "format": "litert",
                                 "quantization": "int8", "bytes": 123456, "sha256": "...",
                                 "input": {...}, "output": {...}, "code": {...},
                                 "created_at": "...", "parity": {..., "passed": true}}}}

Written atomically after each export; an entry is added only once its file is in place, so a
crash leaves the previous manifest. A file whose SHA-256 no longer matches its entry (edited,
truncated, swapped) is refused wherever it would be used.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from cifar_core.checksums import file_sha256, tree_sha256
from cifar_core.errors import RunFolderError
from cifar_core.runs.files import atomic_write_json, read_json

EXPORTS_DIR = "exports"
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 1


def exports_folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / EXPORTS_DIR


def content_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (a SavedModel export)."""
    return tree_sha256(path) if Path(path).is_dir() else file_sha256(path)


def content_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def read_manifest(run_dir: str | Path) -> dict:
    """The run's manifest (an empty one when the run has no exports)."""
    file = exports_folder(run_dir) / MANIFEST_FILE
    if not file.is_file():
        return {"schema_version": MANIFEST_SCHEMA, "exports": {}}
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("exports"), dict):
        raise RunFolderError(f"{file}: not an export manifest; move it away and export again")
    version = data.get("schema_version")
    if version != MANIFEST_SCHEMA:
        raise RunFolderError(f"{file}: written by a newer cifar_core (manifest schema "
                             f"{version}, this one reads {MANIFEST_SCHEMA}); upgrade cifar_core "
                             "to use these exports")
    return data


def write_entry(run_dir: str | Path, name: str, entry: dict) -> dict:
    """Add or replace export ``name`` in the manifest (atomically); returns the manifest."""
    manifest = read_manifest(run_dir)
    manifest["exports"][name] = entry
    atomic_write_json(exports_folder(run_dir) / MANIFEST_FILE, manifest)
    return manifest


def checked_path(run_dir: str | Path, name: str, entry: dict) -> Path:
    """The file of export ``name``, refused when it is missing or not the file the manifest
    describes (its SHA-256 differs)."""
    path = exports_folder(run_dir) / entry["file"]
    if not path.exists():
        raise RunFolderError(f"export {name}: {path} is missing; export it again")
    if content_sha256(path) != entry.get("sha256"):
        raise RunFolderError(f"export {name}: {path} is not the file that was exported and "
                             "checked (SHA-256 mismatch: changed or swapped); export it again "
                             "with --replace")
    return path


def download(run_dir: str | Path, name: str, entry: dict) -> tuple[bytes, str]:
    """(bytes, file name) of export ``name`` to hand to a user: the file itself, or a
    SavedModel folder as one zip whose top folder is the export's name. Only after its
    SHA-256 is checked (``checked_path``), so a changed or swapped file is never offered
    under the manifest's parity figures."""
    path = checked_path(run_dir, name, entry)
    stem = f"{Path(run_dir).name}-{path.name}"
    if path.is_file():
        return path.read_bytes(), stem
    buffer = io.BytesIO()
    # Stored, not deflated: a SavedModel's variables hardly compress and zipping them
    # would cost seconds of a page view for a few per cent.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            archive.write(file, f"{path.name}/{file.relative_to(path).as_posix()}")
    return buffer.getvalue(), f"{stem}.zip"


def passing_exports(run_dir: str | Path) -> dict[str, dict]:
    """The run's exports that passed parity, by name (empty for a run without exports or
    with an unreadable manifest)."""
    try:
        entries = read_manifest(run_dir)["exports"]
    except RunFolderError:
        return {}
    return {name: entry for name, entry in entries.items()
            if entry.get("parity", {}).get("passed")}
