"""A job's ``log.txt`` as the Train page shows it: its tail, without TensorFlow's native
start-up chatter (real errors stay)."""

from __future__ import annotations

import os

from cifar_core.jobs.records import job_folder
from cifar_core.native_log import is_log_noise
from cifar_core.runs.store import (
    LOG_FILE,
)

LOG_TAIL_MAX_BYTES = 256 * 1024


def read_log_tail(artifacts, run_id: str, lines: int = 40, *, raw: bool = False) -> str:
    """The last ``lines`` lines of the job's log.txt ("" when there is none yet).

    Unless ``raw``, TensorFlow's native start-up chatter is left out (``is_log_noise``);
    real errors stay.
    """
    path = job_folder(artifacts, run_id) / LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_MAX_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    # Progress bars redraw with '\r': keep only the last state of each line.
    rows = [row.rsplit("\r", 1)[-1] for row in text.split("\n")]
    if rows and rows[-1] == "":
        rows.pop()
    if not raw:
        rows = [row for row in rows if not is_log_noise(row)]
    return "\n".join(rows[-lines:]) if lines > 0 else ""
