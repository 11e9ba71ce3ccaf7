"""Training jobs as separate OS processes, queued one at a time (see ``queue``)."""

from cifar_core.jobs.progress import describe_progress, format_duration
from cifar_core.jobs.queue import (
    JobError,
    JobInfo,
    job_history,
    job_info,
    list_jobs,
    read_log_tail,
    resume_queued_jobs,
    stop_job,
    submit_job,
    submit_progression,
)

__all__ = [
    "JobError",
    "JobInfo",
    "describe_progress",
    "format_duration",
    "job_history",
    "job_info",
    "list_jobs",
    "read_log_tail",
    "resume_queued_jobs",
    "stop_job",
    "submit_job",
    "submit_progression",
]
