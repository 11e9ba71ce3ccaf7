"""Stopping the servers the tests start (Streamlit, mlflow): politely, then for sure."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, grace_seconds: float = 20) -> None:
    """SIGTERM, wait up to ``grace_seconds`` for a clean exit, then SIGKILL and reap it, so no
    test leaves a server (and its port) behind."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
