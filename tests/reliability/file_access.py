"""Record every file this process opens, lists, writes or deletes under given folders.

Built on Python's audit hooks (PEP 578): ``open`` (builtins.open, os.open, and so numpy,
zipfile and Keras' loader), directory listings, renames, removals and ``mkdir`` all raise
audit events, whichever thread runs them (AppTest runs the pages in a thread of this
process). A test wraps the code under test in ``watch(folder)`` and asserts the returned
list stays empty: nothing under ``folder`` was touched, directly or through a link.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

EVENTS = {"open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.rmdir",
          "os.mkdir", "os.truncate", "shutil.rmtree", "shutil.copyfile", "os.chmod"}

_watched: list[str] = []
_hits: list[tuple[str, str]] = []
_guard = threading.local()
_installed = False


def _path_of(args) -> str | None:
    if not args:
        return None
    first = args[0]
    if isinstance(first, int):
        return None  # an open file descriptor, opened (and checked) before
    try:
        return os.fsdecode(os.fspath(first))
    except TypeError:
        return None


def _hook(event: str, args) -> None:
    if event not in EVENTS or not _watched or getattr(_guard, "busy", False):
        return
    path = _path_of(args)
    if path is None:
        return
    flags = args[2] if event == "open" and len(args) > 2 else None
    if isinstance(flags, int) and flags & os.O_NOFOLLOW and os.path.islink(path):
        return  # the kernel refuses to open a link with O_NOFOLLOW: nothing is read
    _guard.busy = True
    try:
        real = os.path.realpath(os.path.abspath(path))  # through links, like the kernel
        for folder in _watched:
            if real == folder or real.startswith(folder + os.sep):
                _hits.append((event, path))
    finally:
        _guard.busy = False


@contextmanager
def watch(*folders: Path):
    """Yield a list that fills with (event, path) for each access under ``folders``."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # cannot be removed; idle while nothing is watched
        _installed = True
    resolved = [os.path.realpath(folder) for folder in folders]
    _hits.clear()
    _watched.extend(resolved)
    hits: list[tuple[str, str]] = []
    try:
        yield hits
    finally:
        for folder in resolved:
            _watched.remove(folder)
        hits.extend(_hits)
        _hits.clear()
