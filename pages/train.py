"""Train: launch training jobs and watch them (queue, progress, live curves, log, stop).

UI only. Jobs run as their own processes (``cifar_core.jobs``); everything shown is read back
from run folders, so a reload or a closed tab loses nothing and runs started from the
command line show up too.
"""

from __future__ import annotations

import streamlit as st

from cifar_core import settings
from cifar_core.analysis.data_status import data_status
from cifar_core.charts.training import training_curves_figure
from cifar_core.errors import CifarCoreError
from cifar_core.jobs import (
    JobInfo,
    describe_labels,
    describe_metrics,
    describe_progress,
    describe_request,
    headline_metrics,
    job_history,
    list_jobs,
    read_log_tail,
    resume_queued_jobs,
    stop_job,
    submit_job,
    submit_progression,
)
from cifar_core.jobs.download import download_info
from cifar_core.models.specs import SPECS
from cifar_core.training.config import (
    DEFAULT_SEED,
    LABEL_SETS,
    PROFILES,
    SEARCH_LIMITS,
    SEARCH_MODES,
    TrainConfig,
    describe_change,
    describe_search_workload,
    describe_training,
    freeze_base_effect,
    make_config,
    search_workload,
)
from pages import _ui

_ui.page_frame()

REFRESH_SECONDS = 2.0
RECENT_JOBS_SHOWN = 5  # finished jobs drawn at once; the next ones behind a toggle
RECENT_JOBS_LISTED = 20  # finished jobs listed at most (all of them: the Overview's table)
STATUS_COLORS = {"queued": "gray", "running": "blue", "completed": "green", "failed": "red",
                 "stopped": "orange"}

artifacts = settings.artifacts_dir(st.session_state.get("artifacts_dir"))
data_source = st.session_state.get("data_source") or settings.data_source()

st.title("Train")
st.caption(f"Each job is its own process, training like `cifar-core train`; jobs wait in a "
           f"queue and train one at a time. Runs are saved under `{artifacts}`. Data: "
           f"`{data_source or 'CIFAR-100 (Keras cache or download)'}`.")
if not data_status(data_source).found:
    download = download_info(artifacts)
    if download is not None and download.active:
        st.info(f"{download.describe().capitalize()}. Jobs queued now wait for it.")
    else:
        st.warning("The training data is not on this machine: a job would try to download "
                   "CIFAR-100 and fail without network. Get it on the **Overview** page first "
                   "(download it there, or point at a file or folder you have).")

try:  # after a restart, queued jobs whose process is gone start again, in order
    relaunched = resume_queued_jobs(artifacts)
except (CifarCoreError, OSError) as exc:
    relaunched = []
    st.error(f"Could not check the job queue under {artifacts}: {exc}")
if relaunched:
    st.info(f"Relaunched {len(relaunched)} queued job(s) whose process had ended "
            f"(e.g. after a restart): {', '.join(relaunched)}")

# ------------------------------------------------------------------------------ new job
def search_inputs(defaults: TrainConfig) -> dict:
    """Model 7's search settings; None where left empty (the profile's value)."""
    columns = st.columns(6)
    values = {"search_mode": columns[0].selectbox(
        "Search mode", SEARCH_MODES, index=None, key="train_search_mode",
        placeholder=defaults.search_mode,
        help="cached: each trial trains only the head, on the frozen base's cached features; "
             "full: each trial fine-tunes the whole network (for GPUs); auto: cached on a "
             "CPU, full where a GPU is visible. Empty: the profile's value.")}
    fields = (
        ("search_trials", "Trials", "Stage 1 (RandomSearch): how many random configurations "
                                    "are tried, each cross-validated."),
        ("search_folds", "Folds", "Cross-validation folds of each stage 1 trial."),
        ("search_epochs", "Search epochs", "Stage 1: epochs per fold, no early stopping."),
        ("grid_epochs", "Grid epochs", "Stage 2 (GridSearch): at most this many epochs per "
                                       "combination (early stopping)."),
        ("grid_trials", "Grid combinations", "Stage 2: at most this many combinations of the "
                                             "values stage 1's best three trials differ in; "
                                             "'all': every one of them."),
    )
    for column, (name, label, explanation) in zip(columns[1:], fields, strict=True):
        _, lowest, highest = SEARCH_LIMITS[name]
        default = getattr(defaults, name)
        values[name] = column.number_input(
            label, min_value=lowest, max_value=highest, value=None, step=1, key=f"train_{name}",
            placeholder="all" if default is None else str(default),
            help=f"{explanation} Empty: the profile's value.")
    return values


with st.container(border=True):
    st.subheader("New job")
    left, middle, right = st.columns(3)
    model = left.selectbox("Model", list(SPECS), key="train_model",
                           format_func=lambda n: f"{n} · {SPECS[n].title}",
                           help="The report's progression: each model adds one change.")
    labels = middle.radio("Labels", LABEL_SETS, horizontal=True, key="train_labels",
                          format_func=describe_labels)
    profile = right.selectbox("Profile", list(PROFILES), index=list(PROFILES).index("quick"),
                              key="train_profile",
                              help="seed: the report's protocol (model 8: its own budget); "
                                   "quick: a few epochs for a demo. The text below the "
                                   "model states the values the job uses.")
    defaults = make_config(model, labels=labels, profile=profile)  # the profile's values
    spec = SPECS[model]
    description = st.empty()  # filled once the fields below are read
    col_epochs, col_batch, col_patience, col_seed, col_freeze = st.columns(5)
    epochs = col_epochs.number_input("Epochs", min_value=1, max_value=10_000, value=None,
                                     step=1, key="train_epochs",
                                     placeholder=str(defaults.epochs),
                                     help="Empty: the profile's value.")
    batch_size = col_batch.number_input("Batch size", min_value=1, max_value=100_000,
                                        value=None, step=1, key="train_batch_size",
                                        placeholder=str(defaults.batch_size),
                                        help="Empty: the profile's value.")
    patience = col_patience.number_input(
        "Patience", min_value=0, max_value=10_000, value=None, step=1, key="train_patience",
        placeholder=str(defaults.patience),
        help="Early stopping: epochs without a better validation loss; 0 disables it. "
             "Empty: the profile's value.")
    seed = col_seed.number_input("Seed", min_value=0, max_value=2**32 - 1, value=None, step=1,
                                 key="train_seed", placeholder=str(DEFAULT_SEED),
                                 help="Empty: the default seed.")
    freeze_help = freeze_base_effect(model)
    with_base = [n for n in SPECS if freeze_base_effect(n) is not None]
    freeze_base = col_freeze.checkbox(
        "Freeze base", key="train_freeze_base", disabled=freeze_help is None,
        help=freeze_help or (f"Model {model} has no MobileNet base to freeze (models "
                             f"{', '.join(map(str, with_base))} have one).")
    ) and freeze_help is not None
    overrides = {"epochs": epochs, "batch_size": batch_size, "patience": patience,
                 "seed": seed, "freeze_base": freeze_base or None}
    if spec.recipe.hyperparameter_search:
        with st.expander("Search settings (model 7)", expanded=True):
            overrides.update(search_inputs(defaults))
            search_cost = st.empty()
    try:
        job_config = make_config(model, labels=labels, profile=profile, **overrides)
    except CifarCoreError as exc:
        job_config = defaults
        st.warning(f"These settings would be refused: {exc}")
    description.caption(f"Model {model}: {describe_change(job_config)}. "
                        f"{describe_training(job_config)}")
    if spec.recipe.hyperparameter_search:
        search_cost.caption(describe_search_workload(search_workload(job_config),
                                                     job_config.search_mode))
    launch_col, progression_col = st.columns([1, 2])
    if launch_col.button("Launch", type="primary", key="train_launch"):
        try:
            run_id = submit_job(artifacts, model=model, labels=labels, profile=profile,
                                data=data_source, overrides=overrides)
        except CifarCoreError as exc:
            st.error(f"Not launched: {exc}")
        else:
            st.success(f"Queued model {model} as run `{run_id}`.")
    if progression_col.button("Queue the quick progression (models 1-5)",
                              key="train_progression",
                              help="Models 1-5 with the quick profile, one after the other. "
                                   "While they are queued or running, asking again queues "
                                   "nothing."):
        try:
            queued = submit_progression(artifacts, data=data_source)
        except CifarCoreError as exc:
            st.error(f"Not launched: {exc}")
        else:
            (st.info if queued.already_queued else st.success)(queued.message)


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
        title = (f"**Model {job.model or '?'}** · {describe_labels(job.labels)} · "
                 f"{describe_request(job)} · :{color}[**{job.status}**]")
        if not job.is_job:
            title += " · started from the CLI"
        head.markdown(title)
        head.caption(f"run `{job.run_id}` · submitted {job.submitted_at or '-'}")
        if job.status == "completed" and (headline := headline_metrics(job.path)):
            head.markdown(f"**{describe_metrics(headline)}**")
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
            st.warning(describe_progress(job))  # where it stopped
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
    recent = [job for job in jobs if not job.active][:RECENT_JOBS_LISTED]
    st.subheader(f"Queue ({len(active)} active)")
    if not active:
        st.info("No job is queued or running. Launch one above; it keeps running if you "
                "close this page.")
    for job in active:
        render_job(job)
    if recent:
        st.subheader("Recent jobs")
        for job in recent[:RECENT_JOBS_SHOWN]:
            render_job(job)
        older = recent[RECENT_JOBS_SHOWN:]
        # A toggle, not an expander: each card has expanders, which cannot be nested.
        if older and st.toggle(f"Show {len(older)} older job{'s' if len(older) > 1 else ''}",
                               key="train_show_older"):
            for job in older:
                render_job(job)


job_board()
