"""Train: launch training jobs and watch them (queue, progress, live curves, log, stop).

UI only. Jobs run as their own processes (``cifar_core.jobs``); everything shown is read back
from run folders, so a reload or a closed tab loses nothing and runs started from the
command line show up too.
"""

from __future__ import annotations

import streamlit as st

from cifar_core import settings
from cifar_core.charts.training import training_curves_figure
from cifar_core.errors import CifarCoreError
from cifar_core.jobs import (
    JobInfo,
    describe_progress,
    job_history,
    list_jobs,
    read_log_tail,
    resume_queued_jobs,
    stop_job,
    submit_job,
    submit_progression,
)
from cifar_core.models.specs import SPECS
from cifar_core.training.config import DEFAULT_SEED, LABEL_SETS, PROFILES
from pages import _ui

_ui.page_frame()

REFRESH_SECONDS = 2.0
RECENT_JOBS_SHOWN = 5
STATUS_COLORS = {"queued": "gray", "running": "blue", "completed": "green", "failed": "red",
                 "stopped": "orange"}

artifacts = settings.artifacts_dir(st.session_state.get("artifacts_dir"))
data_source = st.session_state.get("data_source") or settings.data_source()

st.title("Train")
st.caption(f"Each job is its own process running `cifar-core train`; jobs wait in a queue and "
           f"train one at a time. Runs are saved under `{artifacts}`. Data: "
           f"`{data_source or 'CIFAR-100 (Keras cache or download)'}`.")

try:  # after a restart, queued jobs whose process is gone start again, in order
    relaunched = resume_queued_jobs(artifacts)
except (CifarCoreError, OSError) as exc:
    relaunched = []
    st.error(f"Could not check the job queue under {artifacts}: {exc}")
if relaunched:
    st.info(f"Relaunched {len(relaunched)} queued job(s) whose process had ended "
            f"(e.g. after a restart): {', '.join(relaunched)}")

# ------------------------------------------------------------------------------ new job
with st.container(border=True):
    st.subheader("New job")
    left, middle, right = st.columns(3)
    model = left.selectbox("Model", list(SPECS), key="train_model",
                           format_func=lambda n: f"{n} · {SPECS[n].title}",
                           help="The report's progression: each model adds one change.")
    labels = middle.radio("Labels", LABEL_SETS, horizontal=True, key="train_labels",
                          format_func={"fine": "100 classes",
                                       "coarse": "20 superclasses"}.get)
    profile = right.selectbox("Profile", list(PROFILES), index=list(PROFILES).index("quick"),
                              key="train_profile",
                              help="seed: the report's protocol (up to 50 epochs, early "
                                   "stopping); quick: a few epochs for a demo.")
    defaults = PROFILES[profile]
    spec = SPECS[model]
    st.caption(f"Model {model}: {spec.change}.")
    col_epochs, col_batch, col_patience, col_seed, col_freeze = st.columns(5)
    epochs = col_epochs.number_input("Epochs", min_value=1, max_value=10_000, value=None,
                                     step=1, key="train_epochs",
                                     placeholder=str(defaults["epochs"]),
                                     help="Empty: the profile's value.")
    batch_size = col_batch.number_input("Batch size", min_value=1, max_value=100_000,
                                        value=None, step=1, key="train_batch_size",
                                        placeholder=str(defaults["batch_size"]),
                                        help="Empty: the profile's value.")
    patience = col_patience.number_input(
        "Patience", min_value=0, max_value=10_000, value=None, step=1, key="train_patience",
        placeholder=str(defaults["patience"]),
        help="Early stopping: epochs without a better validation loss; 0 disables it. "
             "Empty: the profile's value.")
    seed = col_seed.number_input("Seed", min_value=0, max_value=2**32 - 1, value=None, step=1,
                                 key="train_seed", placeholder=str(DEFAULT_SEED),
                                 help="Empty: the default seed.")
    backbone = spec.stem == "mobilenet"
    freeze_base = col_freeze.checkbox(
        "Freeze base", key="train_freeze_base", disabled=not backbone,
        help="Models 6-7: keep the MobileNet base frozen (a feature extractor) instead of "
             "fine-tuning it." if backbone else "Only models 6-7 have a MobileNet base.")
    launch_col, progression_col = st.columns([1, 2])
    if launch_col.button("Launch", type="primary", key="train_launch"):
        try:
            run_id = submit_job(artifacts, model=model, labels=labels, profile=profile,
                                data=data_source,
                                overrides={"epochs": epochs, "batch_size": batch_size,
                                           "patience": patience, "seed": seed,
                                           "freeze_base": freeze_base and backbone})
        except CifarCoreError as exc:
            st.error(f"Not launched: {exc}")
        else:
            st.success(f"Queued model {model} as run `{run_id}`.")
    if progression_col.button("Queue the quick progression (models 1-5)",
                              key="train_progression"):
        try:
            run_ids = submit_progression(artifacts, data=data_source)
        except CifarCoreError as exc:
            st.error(f"Not launched: {exc}")
        else:
            st.success(f"Queued {len(run_ids)} jobs: {', '.join(run_ids)}")


# ------------------------------------------------------------------------------ the queue
def stop(run_id: str) -> None:
    """Stop button callback: runs before the rerun, so the job is drawn already stopped."""
    try:
        stop_job(artifacts, run_id)
    except CifarCoreError as exc:
        st.session_state["train_stop_error"] = f"Could not stop {run_id}: {exc}"


def render_job(job: JobInfo) -> None:
    """One job: status, progress bar, curves, log, Stop."""
    with st.container(border=True):
        head, action = st.columns([5, 1])
        color = STATUS_COLORS.get(job.status, "gray")
        title = (f"**Model {job.model or '?'}** · {job.labels or '?'} · "
                 f"{job.profile or '?'} profile · :{color}[**{job.status}**]")
        if not job.is_job:
            title += " · started from the CLI"
        head.markdown(title)
        head.caption(f"run `{job.run_id}` · submitted {job.submitted_at or '-'}")
        if job.active:
            action.button("Stop", key=f"stop-{job.run_id}", on_click=stop, args=(job.run_id,),
                          help="End the job's process; the run is kept as `stopped`.")
        if job.status == "running":
            st.progress(job.fraction, text=describe_progress(job))
        elif job.status == "queued":
            st.caption(describe_progress(job) + (f" ({job.note})" if job.note else ""))
        elif job.status == "failed":
            st.error(f"Failed: {job.error or 'no error recorded; see the log'}")
        elif job.status == "stopped":
            st.warning(job.error or "Stopped by the user.")
        else:
            st.success(describe_progress(job))
        history = job_history(job.path)
        if history or job.status == "running":
            with st.expander("Loss and accuracy", expanded=job.status == "running"):
                st.plotly_chart(training_curves_figure(history), key=f"curves-{job.run_id}",
                                width="stretch")
        if job.is_job:
            with st.expander("Log", expanded=job.status == "failed"):
                st.code(read_log_tail(artifacts, job.run_id, lines=40) or "(no output yet)",
                        language=None)


@st.fragment(run_every=REFRESH_SECONDS)
def job_board() -> None:
    """Re-read the run folders every few seconds, without rerunning the whole page."""
    try:
        jobs = list_jobs(artifacts, include_finished=True)
    except (CifarCoreError, OSError) as exc:
        st.error(f"Could not read the jobs under {artifacts}: {exc}")
        return
    if "train_stop_error" in st.session_state:
        st.error(st.session_state.pop("train_stop_error"))
    active = [job for job in jobs if job.active]
    recent = [job for job in jobs if not job.active][:RECENT_JOBS_SHOWN]
    st.subheader(f"Queue ({len(active)} active)")
    if not active:
        st.info("No job is queued or running. Launch one above; it keeps running if you "
                "close this page.")
    for job in active:
        render_job(job)
    if recent:
        st.subheader("Recent jobs")
        for job in recent:
            render_job(job)


job_board()
