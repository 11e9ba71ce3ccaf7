"""Many run folders fast: copies of a few real runs, each under its own valid run id.

Used by the 50-run app test and by benchmarks/reliability.py. The copies' files are hard
links to the originals where the file system allows it (pages only read them, and every
write in cifar_core replaces a file instead of changing it in place); ``run.json`` is a new
file with the copy's id and creation time, so the copies sort and list as distinct runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cifar_core.runs.store import RUN_FILE, runs_root, validate_run_id


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def clone_runs(sources: list[Path], artifacts: Path, count: int) -> list[str]:
    """``count`` run folders under ``<artifacts>/runs``, copies of ``sources`` in turn.

    Ids look like real ones (``20300101-000012-m5-fine``: a stamp, then the model and label
    set of the source); creation times are one minute apart, the last one newest.
    """
    root = runs_root(artifacts)
    root.mkdir(parents=True, exist_ok=True)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    made = []
    for index in range(count):
        source = Path(sources[index % len(sources)])
        suffix = source.name.split("-", 2)[2]  # "m5-fine" of "20250101-120000-m5-fine"
        created = start + timedelta(minutes=index)
        run_id = validate_run_id(f"{created:%Y%m%d-%H%M%S}-{suffix}")
        target = root / run_id
        shutil.copytree(source, target, copy_function=_link_or_copy)
        run = json.loads((source / RUN_FILE).read_text())
        run.update(run_id=run_id, created_at=created.isoformat(timespec="seconds"))
        (target / RUN_FILE).unlink()  # a hard link to the source's: never write through it
        (target / RUN_FILE).write_text(json.dumps(run, indent=2))
        made.append(run_id)
    return made


def folder_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (links by their target)."""
    digest = {}
    for path in sorted(Path(folder).rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            digest[relative] = "link -> " + os.readlink(path)
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
