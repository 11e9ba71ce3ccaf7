"""TensorFlow's native start-up chatter, told apart from real errors, and kept out of a
process's terminal.

TensorFlow 2.21 prints absl/glog lines before its logging is set up ("WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR", "I0000 ... port.cc]
oneDNN custom operations are on", "cudart_stub.cc] Could not find cuda drivers") whatever
``TF_CPP_MIN_LOG_LEVEL`` says (measured: the variable silences only the lines printed after
that point, such as "E0000 ... failed call to cuInit"). Harmless, but some are tagged E and
read like errors. ``is_log_noise`` recognises them (a job's log tail drops them);
``filter_native_stderr`` passes a process's own stderr through the same filter, for the
dashboard's terminal. Info and warning lines are left out, error lines only where they are
known start-up noise: any other E or F (fatal) line is a real error and stays.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading

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

RAW_STDERR_ENV = "CIFAR_CORE_RAW_STDERR"  # "1": the app leaves its stderr unfiltered
_filtering = threading.Lock()
_installed = False


def is_log_noise(line: str) -> bool:
    """Whether a log line is TensorFlow's native start-up chatter, not a real error."""
    native = _NATIVE_LOG_LINE.match(line)
    if native:
        return native["level"] in "IW" or (
            native["level"] == "E" and bool(_NATIVE_ERROR_NOISE.search(native["message"])))
    return line.startswith(_NATIVE_LOG_NOISE)


def filter_native_stderr() -> bool:
    """From now on, this process's stderr (file descriptor 2, so C++ writes too) loses the
    lines ``is_log_noise`` recognises; everything else reaches the terminal unchanged.

    A pipe replaces fd 2 and a daemon thread copies each complete line to the original
    stderr unless it is noise. Once per process (later calls return False); returns True
    when it installed the filter. Call it before TensorFlow is imported.
    """
    global _installed
    with _filtering:
        if _installed:
            return False
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        _installed = True

    def copy() -> None:
        # Never stop reading: a writer to a full pipe would block, and with it the process.
        # A line that cannot reach the terminal (it was closed) is dropped.
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines
                                if not is_log_noise(line.decode("utf-8", errors="replace")))
                if kept:
                    with contextlib.suppress(OSError):
                        os.write(terminal, kept)

    threading.Thread(target=copy, name="native-stderr-filter", daemon=True).start()
    return True
