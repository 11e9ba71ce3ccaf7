"""Training jobs: each one its own OS process, queued one at a time.

A job trains into a run folder claimed when it is submitted (status ``queued``). Next to the
usual run files (``cifar_core.runs.store``) the folder holds:

================  ==========================================================================
``job.json``      what to run (the validated training config and its data, and the request
                  it came from: ``cifar_core.jobs.request``), when it was submitted, which
                  process runs it (pid = its process group), how often it was launched
``job.lock``      locked (``flock``) by the job's process for its whole life
``log.txt``       the process's stdout and stderr
================  ==========================================================================

and ``<artifacts>/jobs.lock`` is the one training slot: the job that trains holds it.
``<artifacts>/progression.lock`` is held while ``submit_progression`` looks for a queued copy
of the progression and queues it, so that it is queued once however many ask at once.

Why ``flock``: the kernel drops a lock when the process holding it dies, however it dies
(SIGKILL, out of memory, a machine restart). A killed job never blocks the queue, and "is
this job's process alive?" is answered by trying its ``job.lock`` instead of trusting a pid,
which another process may have reused after a restart. The launcher locks ``job.lock`` before
starting the process and hands the locked file to it, so a job is never seen dead while it
starts.

Lifecycle: ``submit_job`` claims the folder, writes ``job.json`` and starts
``python -m cifar_core.jobs.worker <folder>`` detached in its own session. The worker waits
until no older queued job is alive and the slot is free, then runs the pipeline with the
job's config in that folder, which marks the run running / completed / failed / stopped.
``stop_job`` ends the process group (SIGTERM, then SIGKILL). ``resume_queued_jobs`` (called
when the app starts) relaunches queued jobs whose process is gone, e.g. after a restart, and
records running jobs whose process is gone as failed.

Modules, one concern each: ``request`` (what a job runs: its config), ``records`` (its files),
``locks`` (liveness, the training slot), ``launch`` (submitting, starting the worker),
``status`` (a job as the dashboard shows it), ``logs`` (the log tail), ``stop``,
``recovery`` (after a restart), ``worker`` (the job's process), ``progress`` and ``summary``
(words for the Train page).
"""


from cifar_core.jobs.launch import QueuedProgression, submit_job, submit_progression
from cifar_core.jobs.logs import read_log_tail
from cifar_core.jobs.progress import describe_progress, format_duration
from cifar_core.jobs.records import JobError
from cifar_core.jobs.recovery import resume_queued_jobs
from cifar_core.jobs.status import JobInfo, job_history, job_info, list_jobs
from cifar_core.jobs.stop import stop_job
from cifar_core.jobs.summary import (
    describe_labels,
    describe_metrics,
    describe_request,
    headline_metrics,
    queue_rows,
)

__all__ = [
    "JobError",
    "JobInfo",
    "QueuedProgression",
    "describe_labels",
    "describe_metrics",
    "describe_progress",
    "describe_request",
    "format_duration",
    "headline_metrics",
    "job_history",
    "job_info",
    "list_jobs",
    "queue_rows",
    "read_log_tail",
    "resume_queued_jobs",
    "stop_job",
    "submit_job",
    "submit_progression",
]
