"""Overview: the accuracy progression, the runs table, which run counts per model."""

import streamlit as st

from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.data_status import data_status
from cifar_core.analysis.names import literal_markdown
from cifar_core.charts.progression import progression_figure
from cifar_core.errors import CifarCoreError
from pages import _ui

_ui.page_frame()

QUEUED_KEY = "overview_queued"  # the first-run button's message, shown after its rerun
DATA_PATH_KEY = "overview_data_path"  # the path field of "use a file on this machine"
DATA_MESSAGE_KEY = "overview_data_message"  # (kind, text) of the last path check
DOWNLOAD_REFRESH_SECONDS = 2.0
INTRO = (
    "This dashboard trains and compares the seven CIFAR-100 classifiers of the report, from a "
    "one-layer CNN (model 1) to a tuned MobileNet (model 7), and model 8 beyond them "
    "(MobileNet at 144 px, partly fine-tuned), and explains where each one fails. Every "
    "number comes from a run folder under `{artifacts}`, with the configuration, data and "
    "code version behind it.")


def show_active_jobs() -> set[str]:
    """The queued and running jobs, in words (what the first-run button just queued);
    returns their run ids."""
    try:
        from cifar_core.jobs import list_jobs, queue_rows
    except ImportError:
        return set()
    jobs = []
    with _ui.guard("Reading the job queue"):
        jobs = list_jobs(_ui.artifacts())
    if jobs:
        st.subheader(f"Queued and running ({len(jobs)} job{'s' if len(jobs) > 1 else ''})")
        st.dataframe(queue_rows(jobs), hide_index=True, width="stretch")
    return {job.run_id for job in jobs}


def use_data_path() -> None:
    """The path field's button (a callback: it may set the sidebar's data source): checked
    before anything is queued, the way training will read it."""
    path = (st.session_state.get(DATA_PATH_KEY) or "").strip()
    if not path:
        st.session_state[DATA_MESSAGE_KEY] = ("error", "Enter the path of a file or folder.")
        return
    try:
        from cifar_core.data import count_training_images

        images = count_training_images(path) if data_status(path).found else 0
    except CifarCoreError as exc:
        st.session_state[DATA_MESSAGE_KEY] = ("error", f"{path} cannot be used: {exc}")
        return
    if not images:
        st.session_state[DATA_MESSAGE_KEY] = (
            "error", f"{path} holds no training images: give cifar-100-python.tar.gz, its "
                     "extracted folder, or an image folder with train/<class>/ and "
                     "test/<class>/ inside.")
        return
    st.session_state[_ui.DATA_KEY] = path
    st.session_state[DATA_MESSAGE_KEY] = (
        "success", f"Using {path} ({images:,} training images) for new training jobs; the "
                   "sidebar's data source now names it.")


def start_the_download() -> None:
    from cifar_core.jobs.download import start_download

    try:
        start_download(_ui.artifacts())
    except CifarCoreError as exc:
        st.session_state[DATA_MESSAGE_KEY] = ("error", f"The download did not start: {exc}")


@st.fragment(run_every=DOWNLOAD_REFRESH_SECONDS)
def download_panel() -> None:
    """The CIFAR-100 download: its button, or its progress, or how it ended."""
    from cifar_core.jobs.download import download_info

    info = download_info(_ui.artifacts())
    if info is not None and info.active:
        st.progress(info.fraction, text=info.describe())
        st.caption("Trainings queued meanwhile wait for it; you may close the browser.")
        return
    if info is not None and info.status == "completed":
        st.success(f"CIFAR-100 is downloaded and checked: {literal_markdown(info.dest)}.")
        if not data_status(_ui.data_source()).found:
            return
        st.rerun()  # the whole page: the data is here now
    if info is not None and info.status == "failed":
        st.error(f"The last download failed: {literal_markdown(info.error)}")
    st.button("Download CIFAR-100 here (about 170 MB)", on_click=start_the_download,
              key="overview_download",
              help="A background job: the official archive, checked against its SHA-256, "
                   "saved in the Keras cache where training looks first.")


def get_the_data(status) -> None:
    """The ways to get CIFAR-100 when it is not on this machine, each checked."""
    st.subheader("Get the training data")
    st.warning("CIFAR-100 was not found on this machine. " + literal_markdown(status.help or ""))
    download, local = st.tabs(["Download it here", "Use a file or folder on this machine"])
    with download:
        download_panel()
    with local:
        st.text_input("Path", key=DATA_PATH_KEY,
                      placeholder="/data/cifar-100-python.tar.gz, or an image-folder data set",
                      help="cifar-100-python.tar.gz or its extracted folder, or an image-folder "
                           "data set (train/<class>/..., test/<class>/..., a folder or a "
                           ".tar.gz)")
        st.button("Use this data", on_click=use_data_path, key="overview_use_path")


def first_run_button(ready: bool) -> None:
    help_text = None if ready else ("Get the training data first (above): without it the "
                                    "jobs would only fail.")
    if st.button("Train the quick progression (models 1-5)", type="primary",
                 disabled=not ready, help=help_text):
        try:
            from cifar_core.jobs import submit_progression
        except ImportError:
            st.error("The job system is not available in this installation. From a terminal: "
                     "`for n in 1 2 3 4 5; do cifar-core train --model $n --profile quick; "
                     "done`")
            return
        queued = None
        with _ui.guard("Starting the training jobs"):
            queued = submit_progression(_ui.artifacts(), models=range(1, 6), profile="quick",
                                        data=_ui.data_source())
        if queued is not None:  # draw the page again from the new run folders
            st.session_state[QUEUED_KEY] = queued.message
            st.rerun()


def show_ended_runs(records) -> None:
    """Failed and stopped runs with their reasons in full (a table would cut them)."""
    ended = [r for r in records if r.status in ("failed", "stopped")]
    if ended:
        st.subheader("Runs that did not complete")
        st.markdown("\n".join(
            f"- `{r.run_id}` ({r.status}): "
            + literal_markdown((r.run or {}).get("error") or "; ".join(r.problems)
                               or "no reason recorded") for r in ended))


def guidance(records) -> None:
    """Until a run has completed: what the tool is, the data, the first-run button, the
    jobs under way and the runs that did not complete."""
    st.markdown(INTRO.format(artifacts=_ui.artifacts()))
    if not records:
        st.markdown("There are no runs yet. The quickest start trains models 1 to 5 with the "
                    "`quick` profile (a few epochs each, one after the other) in the "
                    "background; you can follow them on the **Train** page and close the "
                    "browser meanwhile.")
    else:
        st.info("No completed run yet. Follow the training on the **Train** page (progress, "
                "curves, logs, Stop); each run appears here in the progression once it "
                "finishes.")
    status = data_status(_ui.data_source())
    downloading = False
    if status.found:
        st.caption(f"Training data: {literal_markdown(status.location)}")
    else:
        from cifar_core.jobs.download import download_info

        info = download_info(_ui.artifacts())
        downloading = info is not None and info.active
        get_the_data(status)
    kind, text = st.session_state.pop(DATA_MESSAGE_KEY, (None, None))  # of the last check
    if kind:
        getattr(st, kind)(literal_markdown(text))
    active = show_active_jobs()
    if not active:
        first_run_button(status.found or downloading)
    show_ended_runs(records)
    others = [r for r in records
              if r.run_id not in active and r.status not in ("failed", "stopped")]
    if others:
        st.subheader("Other runs")
        st.dataframe(run_analysis.runs_table(others), hide_index=True, width="stretch")


st.title("Overview")
records = _ui.runs()
if queued_message := st.session_state.pop(QUEUED_KEY, None):
    st.success(queued_message)

scope, datasets, _ = _ui.scope_and_counting()
if not datasets:
    guidance(records)
    st.stop()

chart = st.container()
if len(datasets) > 1:
    scope = st.selectbox("Data set", list(datasets), format_func=datasets.get,
                         index=list(datasets).index(scope),
                         help="Runs on different data are never mixed in one progression.")
    st.session_state[_ui.DATASET_KEY] = scope

choices = st.session_state.setdefault(_ui.CHOICES_KEY, {})
groups = {key: group for key, group in run_analysis.runs_by_model(records, scope).items()
          if len(group) > 1}
counted = run_analysis.choose_counting_runs(records, choices, scope)  # each picker's default
if groups:
    with st.expander("Which run counts for each model", expanded=False):
        st.caption("Several completed runs exist for these models; the latest trained from "
                   "the model's current spec counts unless you choose another (*earlier "
                   "spec*: trained by code where the model was defined differently).")
        for key, group in groups.items():
            ids = [r.run_id for r in group]
            chosen = st.selectbox(
                f"Model {key[0]} ({key[1]} labels)", ids, index=ids.index(counted[key].run_id),
                format_func={r.run_id: run_analysis.run_label(r) for r in group}.get,
                key=f"counting-{run_analysis.choice_key(key)}")
            choices[run_analysis.choice_key(key)] = chosen

counting = run_analysis.choose_counting_runs(records, choices, scope)
points = run_analysis.progression_points(counting)
with chart:
    st.caption(f"Data: {datasets[scope]}. Grey markers are the report's published CIFAR-100 "
               "results, for reference.")
    st.plotly_chart(progression_figure(points), width="stretch")

st.subheader("Runs")
table = run_analysis.runs_table(records, counting)
notes = table.loc[table["problems"].astype(bool), ["run id", "problems"]]
# Problems are listed in full below the table, and the data set only where runs differ in
# it (the chart's caption names it otherwise): the rest fits 1400 px without scrolling.
hidden = ["problems"] + (["data set"] if table["data set"].nunique(dropna=True) <= 1 else [])
percent = st.column_config.NumberColumn(format="%.1f%%", width=60)
st.dataframe(
    table, hide_index=True, width="stretch", placeholder="-",
    column_config={
        **dict.fromkeys(hidden),  # None hides a column (its values stay in the data)
        "run id": st.column_config.TextColumn(width=172, pinned=True),
        "status": st.column_config.TextColumn(width=80),
        "counts": st.column_config.CheckboxColumn(width=56, help="counted in the progression"),
        "model": st.column_config.TextColumn(width=50),
        "labels": st.column_config.TextColumn(width=56),
        "profile": st.column_config.TextColumn(width=56),
        "top-1 %": percent,
        "top-5 %": percent,
        "superclass %": st.column_config.NumberColumn(format="%.1f%%", width=86),
        "epochs": st.column_config.NumberColumn(width=56),
        "training (s)": st.column_config.NumberColumn(
            format="%.1f", width=80, help="the fit, as training recorded it"),
        "whole run (min)": st.column_config.NumberColumn(
            format="%.1f", width=100, help="from the run's start to its end: data loading, "
                                           "feature pass, warm-up, search and evaluation too"),
        **({} if "data set" in hidden else {
            "data set": st.column_config.TextColumn(width=150)}),
    })
if len(notes):
    st.markdown("**Notes on runs**\n\n" + "\n".join(
        f"- `{run_id}`: {literal_markdown(note)}" for run_id, note in notes.itertuples(
            index=False)))
