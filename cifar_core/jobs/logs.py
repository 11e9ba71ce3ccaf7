"""A job's ``log.txt`` as the Train page shows it: its tail, without TensorFlow's native
start-up chatter (real errors stay)."""

from __future__ import annotations

import os
import re

from cifar_core.jobs.records import job_folder
from cifar_core.runs.store import (
    LOG_FILE,
)

LOG_TAIL_MAX_BYTES = 256 * 1024


# TensorFlow's C++ start-up chatter: absl/glog lines ("I0000 00:00:1764625000.123456  12345
# port.cc:153] oneDNN custom operations are on...") and the line after the CPU-feature notice.
# Harmless, but some are tagged E ("oneDNN supports DT_HALF only on platforms with AVX-512",
# "failed call to cuInit" without a GPU) and read like errors in a log tail. Info and warning
# lines are left out, error lines only where they are known start-up noise: any other E or
# F (fatal) line is a real error and stays.
_NATIVE_LOG_LINE = re.compile(r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
                              r"[\w./-]+:\d+\] (?P<message>.*)$")
_NATIVE_ERROR_NOISE = re.compile(
    r"oneDNN supports DT_\w+ only on platforms with|failed call to cuInit|"
    r"Unable to register cu\w+ factory|[Cc]omputation placer already registered|"
    r"[Cc]ould not find cuda drivers|TF-TRT Warning|"
    r"NodeDef mentions attribute \w+ which is not in the op definition")  # ignored attrs
_NATIVE_LOG_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called",
    "To enable the following instructions:",  # follows "This TensorFlow binary is optimized"
)


def is_log_noise(line: str) -> bool:
    """Whether a log line is TensorFlow's native start-up chatter, not a real error."""
    native = _NATIVE_LOG_LINE.match(line)
    if native:
        return native["level"] in "IW" or (
            native["level"] == "E" and bool(_NATIVE_ERROR_NOISE.search(native["message"])))
    return line.startswith(_NATIVE_LOG_NOISE)


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
