"""Streamlit glue shared by app.py and the pages: sidebar settings, cached loaders, guards.

Everything computed lives in ``cifar_core``; this module only keeps state and caches.
Caches are keyed by what changes on disk (a fingerprint of the run folders, file
modification times), so a run that finishes shows up on the next rerun without a restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from cifar_core import settings
from cifar_core.analysis import runs as run_analysis
from cifar_core.errors import CifarCoreError
from cifar_core.runs.store import MODEL_FILE, PREDICTIONS_FILE, RunRecord, list_runs

ARTIFACTS_KEY = "artifacts_dir"
DATA_KEY = "data_source"
RUN_KEY = "run_id"
CHOICES_KEY = "counting_choices"  # per-model run choices: {"5-fine": run_id}
DATASET_KEY = "dataset_scope"  # which data set's runs the progression shows
NAVIGATION_CHECKED_KEY = "_app_navigation_checked"  # see use_app_navigation
APP_TITLE = "CIFAR-100 progression"
# Loaded Keras models kept in memory (each up to ~40 MB): enough for the counted run of
# each model at once (Classify's every-model view) and a chosen one.
MODEL_CACHE_ENTRIES = 10
RUNS_TTL_SECONDS = 30  # re-read at least this often: a dead job's heartbeat goes stale

log = logging.getLogger("cifar_core.app")
_frame = threading.local()  # per script thread: did app.py draw the sidebar in this run?


def _keep_keras_state_between_runs() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every run.

    Streamlit does so once Keras is imported (``_clean_problem_modules`` in its script
    runner), for apps that build models on each run. It costs a full garbage collection and
    flushes TensorFlow's kernel cache: measured here, 0.2-0.3 s added to every page and
    predictions 3-4x slower. This app builds no models per run (loaded models are cached
    with ``st.cache_resource``) and uses no matplotlib, so there is nothing to clean. If a
    Streamlit release renames the hook, this does nothing and the app stays correct, only
    slower (benchmarks/dashboard.py would show it).
    """
    from streamlit.runtime.scriptrunner import script_runner

    if callable(getattr(script_runner, "_clean_problem_modules", None)):
        script_runner._clean_problem_modules = lambda: None


_keep_keras_state_between_runs()


def artifacts() -> str:
    return st.session_state.get(ARTIFACTS_KEY) or str(settings.artifacts_dir())


def data_source() -> str | None:
    value = (st.session_state.get(DATA_KEY) or "").strip()
    return value or None


@st.cache_data(ttl=RUNS_TTL_SECONDS, max_entries=8, show_spinner=False)
def _load_runs(root: str, fingerprint: tuple) -> list[RunRecord]:
    return list_runs(root)


def runs() -> list[RunRecord]:
    """Every run folder under the artifacts location (cached until one changes)."""
    root = artifacts()
    try:
        return _load_runs(root, run_analysis.runs_fingerprint(root))
    except OSError as exc:
        st.error(f"Cannot read the runs under {root}: {exc.strerror or exc}")
        return []


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@st.cache_data(max_entries=16, show_spinner=False)
def _load_predictions(run_dir: str, stamp: int | None) -> dict:
    from cifar_core.analysis.images import load_predictions

    return load_predictions(run_dir)


def predictions(record: RunRecord) -> dict:
    return _load_predictions(str(record.path), _stamp(record.path / PREDICTIONS_FILE))


@st.cache_resource(max_entries=MODEL_CACHE_ENTRIES, show_spinner="Loading the model…")
def _load_classifier(run_dir: str, stamp: int | None):
    from cifar_core.inference import Classifier

    return Classifier(Path(run_dir))


def classifier(record: RunRecord):
    """The run's model, loaded with Keras safe mode on, kept for the next prediction."""
    return _load_classifier(str(record.path), _stamp(record.path / MODEL_FILE))


@st.cache_resource(max_entries=4, show_spinner="Loading the export…")
def _load_export_classifier(run_dir: str, runtime: str, stamp: int | None):
    from cifar_core.exports.make import ExportClassifier

    return ExportClassifier(Path(run_dir), runtime)


def export_classifier(record: RunRecord, runtime: str):
    """The run's passing export for ``runtime`` (``cifar_core.exports.ExportClassifier``),
    kept while its manifest is unchanged."""
    from cifar_core.exports.manifest import MANIFEST_FILE, exports_folder

    return _load_export_classifier(str(record.path), runtime,
                                   _stamp(exports_folder(record.path) / MANIFEST_FILE))


def test_images(record: RunRecord):
    """The run's test images (the library caches the data set), or None with a warning."""
    from cifar_core.analysis.images import run_dataset

    try:
        with st.spinner("Loading the run's test images…"):
            return run_dataset(record, fallback_source=data_source()).x_test
    except CifarCoreError as exc:
        st.warning(f"Test images cannot be shown: {exc}")
        return None


def usable_runs() -> list[RunRecord]:
    return run_analysis.usable_runs(runs())


def current_run() -> RunRecord | None:
    return run_analysis.find_run(usable_runs(), st.session_state.get(RUN_KEY))


def require_run() -> RunRecord:
    """The run chosen in the sidebar; stops the page with an explanation when there is none."""
    record = current_run()
    if record is None:
        st.info("No completed run yet. Start one on the **Train** page, or from a terminal: "
                "`cifar-core train --model 1 --profile quick`.")
        st.stop()
    if record.problems:
        st.warning(f"Run {record.run_id} is incomplete: " + "; ".join(record.problems))
    return record


def scope_and_counting():
    """(data set key, {data set key: label}, counting runs) for the Overview's choices."""
    records = runs()
    datasets = run_analysis.datasets_of(records)
    scope = st.session_state.get(DATASET_KEY)
    if scope not in datasets:
        scope = next(iter(datasets), None)
    counting = run_analysis.choose_counting_runs(
        records, st.session_state.get(CHOICES_KEY, {}), scope)
    return scope, datasets, counting


@contextmanager
def guard(what: str):
    """Show a clear message instead of a traceback when ``what`` fails."""
    try:
        yield
    except CifarCoreError as exc:
        st.error(f"{what}: {exc}")
    except Exception as exc:  # a bug or an odd file: say so, log the traceback, keep going
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). The details "
                 "are in the app's log.")


@st.cache_resource(show_spinner=False)
def _resume_jobs_once(root: str) -> list[str]:
    from cifar_core.jobs import resume_queued_jobs

    return resume_queued_jobs(root)


def resume_jobs() -> None:
    """Once per server process and artifacts folder: relaunch jobs queued before a restart."""
    # ImportError: an installation without the job system has nothing to resume.
    with contextlib.suppress(CifarCoreError, OSError, ImportError):
        _resume_jobs_once(artifacts())


def use_app_navigation() -> None:
    """Make this server process use app.py's navigation, also for its very first run.

    Streamlit decides once per process whether the app uses the old ``pages/`` folder
    navigation, and until ``st.navigation`` has run once it assumes so because ``pages/``
    exists: the first visit after start-up then gets a sidebar listing every file of
    ``pages/`` (``ui`` and ``app`` among them), and a deep link runs its page without
    app.py. Turning the flag off and rerunning sends even that first run through app.py.
    If a Streamlit release renames the flag, this does nothing and ``page_frame`` still
    draws the sidebar.

    At most one rerun a session: ``AppTest`` sets the flag back before each of its runs,
    and a rerun at every run would swallow each click it simulates.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        if not st.session_state.get(NAVIGATION_CHECKED_KEY):
            st.session_state[NAVIGATION_CHECKED_KEY] = True
            st.rerun()


def sidebar() -> None:
    """The shared frame, drawn by app.py on every run: artifacts, data source, run picker."""
    _draw_sidebar()
    _frame.drawn = True


def page_frame() -> None:
    """First call of every page: draw the frame when app.py did not run in this run.

    Streamlit runs a page file without app.py when a ``pages/`` folder exists and
    ``st.navigation`` has not been called yet in the process (a deep link as the first
    request after start-up, and every page run in ``AppTest``); the page then still gets
    its sidebar and the run choice survives.
    """
    if not getattr(_frame, "drawn", False):
        use_app_navigation()
        _draw_sidebar()
    _frame.drawn = False


def _draw_sidebar() -> None:
    st.session_state.setdefault(ARTIFACTS_KEY, str(settings.artifacts_dir()))
    st.session_state.setdefault(DATA_KEY, settings.data_source() or "")
    with st.sidebar:
        st.title(APP_TITLE)
        st.text_input("Artifacts folder", key=ARTIFACTS_KEY,
                      help="Root holding runs/ (the CLI's --artifacts; env "
                           f"{settings.ENV_ARTIFACTS}).")
        root = Path(os.path.expanduser(artifacts()))
        if root.exists() and not root.is_dir():
            st.error(f"{root} is a file, not a folder.")
        elif not (root / "runs").is_dir():
            st.caption("No runs folder there yet; training creates it.")
        st.text_input("Data source", key=DATA_KEY, placeholder="CIFAR-100 (Keras cache)",
                      help="cifar-100-python.tar.gz, its folder, or an image-folder data set "
                           f"(the CLI's --data; env {settings.ENV_DATA}). Used for new "
                           "training jobs, and for a run's images when its recorded data "
                           "path is gone.")
        labels = {r.run_id: run_analysis.run_label(r) for r in usable_runs()}
        if not labels:
            st.caption("No completed runs yet.")
            return
        if st.session_state.get(RUN_KEY) not in labels:
            st.session_state[RUN_KEY] = next(iter(labels))  # the latest
        st.selectbox("Run", list(labels), key=RUN_KEY, format_func=labels.get,
                     help="The run the Classes, Confusion and Classify pages look into.")



def runs_over_classes_of(record: RunRecord) -> list[RunRecord]:
    """The completed runs over the same class list as ``record`` (itself included): what one
    chart may put side by side (runs over other classes are never mixed in)."""
    names = (record.metrics or {}).get("class_names")
    return [r for r in usable_runs() if (r.metrics or {}).get("class_names") == names]


def counted_runs_over_classes_of(record: RunRecord) -> list[tuple[str, RunRecord]]:
    """``("model 5", run)`` (``"model 1 (coarse)"`` for superclass runs) for the counted run
    of each model over ``record``'s classes, in progression order."""
    same = {r.run_id for r in runs_over_classes_of(record)}
    _, _, counting = scope_and_counting()
    return [(f"model {model}" + ("" if labels == "fine" else f" ({labels})"), run)
            for (model, labels), run in counting.items() if run.run_id in same]

def show_gallery(record: RunRecord, items: list, *, key: str, width: int = 110) -> None:
    """Captioned test images (``cifar_core.analysis.images.gallery``), and on request the
    saliency map of one of them for its predicted class, with the Classify page's method.
    Computed only when asked for: it needs the run's model (loaded once, kept)."""
    if not items:
        return
    st.image([i.image for i in items], caption=[i.caption for i in items], width=width)
    captions = {i: item.caption for i, item in enumerate(items)}
    chosen = st.selectbox("Explain one of these images", [None, *captions], key=key,
                          format_func=lambda i: "none" if i is None else captions[i],
                          help="What drove the prediction: Grad-CAM (models 1-5) or "
                               "SmoothGrad (MobileNet models), as on the Classify page.")
    if chosen is None:
        return
    try:
        model = classifier(record).model
    except CifarCoreError as exc:
        st.caption(f"No saliency map: this run's model cannot be used ({exc}).")
        return
    from cifar_core.analysis.names import readable
    from cifar_core.analysis.saliency import saliency_map
    from cifar_core.charts.prediction import saliency_figure

    item = items[chosen]
    names = (record.metrics or {}).get("class_names") or []
    image = item.original
    with st.spinner("Computing the saliency map…"):
        saliency = saliency_map(model, image, item.example.predicted_class)
    label = readable(names[item.example.predicted_class]) if names else None
    st.plotly_chart(saliency_figure(image, saliency.heatmap, saliency.method, label),
                    width="content", key=f"{key}-saliency")
