"""Run folders: versioned, atomically written, read back the same way by CLI and app."""

from cifar_core.runs.store import (
    SCHEMA_VERSION,
    RunRecord,
    RunWriter,
    list_runs,
    load_run,
    read_history,
    resolve_run_ref,
    runs_root,
)

__all__ = ["SCHEMA_VERSION", "RunRecord", "RunWriter", "list_runs", "load_run",
           "read_history", "resolve_run_ref", "runs_root"]
