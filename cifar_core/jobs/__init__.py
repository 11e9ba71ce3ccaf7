"""Training jobs as separate OS processes, queued one at a time (see ``queue``)."""

from cifar_core.jobs.progress import describe_progress, format_duration
from cifar_core.jobs.queue import (
    JobError,
    JobInfo,
    QueuedProgression,
    job_history,
    job_info,
    list_jobs,
    read_log_tail,
    resume_queued_jobs,
    stop_job,
    submit_job,
    submit_progression,
)
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
