"""After a restart: queued jobs whose process is gone start again in their order; a job
that was training when its process died is recorded as failed (interrupted)."""

from __future__ import annotations

import os

from cifar_core.jobs import launch
from cifar_core.jobs.locks import lock_job_file
from cifar_core.jobs.records import (
    job_folders,
    job_sort_key,
    mark_final,
    read_job_record,
    read_run_record,
    this_host,
)
from cifar_core.jobs.status import INTERRUPTED

MAX_LAUNCHES = 3  # a job whose process keeps dying before it runs is given up, not looped


def resume_queued_jobs(artifacts=None) -> list[str]:
    """Relaunch queued jobs whose process is gone; record dead running jobs as failed.

    Call it when the app starts (it is cheap and safe to call on every page view): after a
    machine restart, queued jobs start again in their original order; a job that was
    training when the machine went down is marked failed (interrupted). Jobs of another
    host (a copied folder) are left alone. A job whose process died before running
    ``MAX_LAUNCHES`` times is marked failed instead of being relaunched again. Returns the
    relaunched run ids.
    """
    relaunched = []
    waiting = []
    for path in job_folders(artifacts):
        job = read_job_record(path)
        run = read_run_record(path)
        if job is None or run is None or not this_host(job):
            continue
        if run.get("status") in ("queued", "running"):
            waiting.append((job_sort_key(job, path), path))
    for _, path in sorted(waiting):
        lock_fd = lock_job_file(path)
        if lock_fd is None:
            continue  # its process is alive (or another app instance is relaunching it)
        try:
            run, job = read_run_record(path) or {}, read_job_record(path) or {}
            if run.get("status") == "running":
                mark_final(path, "failed", INTERRUPTED)
            elif run.get("status") == "queued":
                if len(job.get("launches", [])) >= MAX_LAUNCHES:
                    mark_final(path, "failed", f"the job's process ended before training "
                                f"{MAX_LAUNCHES} times; see log.txt")
                else:
                    launch.start_worker(path, job, lock_fd)
                    relaunched.append(path.name)
        finally:
            os.close(lock_fd)
    return relaunched
