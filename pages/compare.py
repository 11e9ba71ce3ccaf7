"""Compare: run against run. Learning curves of several runs, every class under each model
(a heatmap with click-through to the class's images), and the near misses of each model.
Every computation and figure comes from ``cifar_core.analysis`` and ``cifar_core.charts``."""

import streamlit as st

from cifar_core.analysis import classes as class_analysis
from cifar_core.analysis import compare as compare_analysis
from cifar_core.analysis import errors as error_analysis
from cifar_core.analysis import images as image_analysis
from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.names import readable
from cifar_core.charts.confusion import selected_cell
from cifar_core.charts.errors import (
    class_by_model_figure,
    learning_curves_figure,
    near_misses_figure,
)
from cifar_core.runs.store import read_history
from pages import _ui

_ui.page_frame()

st.title("Compare")
record = _ui.require_run()
metrics = record.metrics
st.caption(f"Runs over the classes of run {run_analysis.run_label(record)} (the sidebar's); "
           "runs over other class lists are never mixed in.")
same_classes = _ui.runs_over_classes_of(record)
labels = {r.run_id: run_analysis.run_label(r) for r in same_classes}
counted = _ui.counted_runs_over_classes_of(record)

with _ui.guard("Learning curves"):
    st.subheader("Learning curves of several runs")
    default = [run.run_id for _, run in counted] or [record.run_id]
    chosen = st.multiselect("Runs", list(labels), default=default, format_func=labels.get,
                            help="Default: the counted run of each model over these classes.")
    left, middle, right = st.columns(3)
    metric = left.radio("Metric", ["loss", "accuracy"], horizontal=True)
    by = middle.radio("Along", ["epoch", "time"], horizontal=True,
                      format_func={"epoch": "epochs", "time": "training time"}.get)
    log_y = right.toggle("Log scale")
    histories = {run_id: read_history(run_analysis.find_run(same_classes, run_id).path)
                 for run_id in chosen}
    st.plotly_chart(learning_curves_figure(histories, metric=metric, by=by, log_y=log_y),
                    width="stretch")
    st.caption("Dashed: training; solid: validation. From each run's history.csv.")

with _ui.guard("Every class under each model"):
    st.subheader("Every class under each model")
    if not counted:
        st.caption("No counted run over these classes.")
    else:
        left, middle, right = st.columns(3)
        class_metric = left.selectbox("Metric", class_analysis.CLASS_METRICS, index=1,
                                      format_func=class_analysis.metric_name)
        names = [label for label, _ in counted]
        before = middle.selectbox("Sort by the gain from", [None, *names],
                                  format_func=lambda n: "no sorting" if n is None else n,
                                  key="compare_before")
        after = right.selectbox("to", names, index=len(names) - 1)
        table = compare_analysis.class_by_model(
            [(label, run.run_id, run.metrics) for label, run in counted], class_metric)
        if before and before != after:
            table = compare_analysis.sorted_by_gain(table, before, after)
            fixed, never = compare_analysis.fixed_and_unfixed(table, before, after)
            st.markdown(f"From {before} to {after}, {len(fixed)} classes rose from below to "
                        f"at least 50% {class_analysis.metric_name(class_metric)}; "
                        f"{len(never)} stay below 50% under every model"
                        + (f" (the first: {', '.join(never[:5])})" if never else "") + ".")
        event = st.plotly_chart(class_by_model_figure(table), width="stretch",
                                on_select="rerun", selection_mode="points",
                                key=f"class-by-model-{class_metric}-{before}-{after}")
        selection = event.get("selection", {}) if isinstance(event, dict) else {}
        cell = selected_cell(selection.get("points"))
        if cell is None:
            st.caption("Click a cell to see that class's test images under that model.")
        else:
            row, column = cell
            run = counted[column][1]
            class_name = table.classes[row]
            run_names = class_analysis.class_names(run.metrics)
            st.markdown(f"**{readable(class_name)}** under {counted[column][0]} "
                        f"(run {run.run_id})")
            images = _ui.test_images(run)
            if images is not None:
                for title, correct in (("Misclassified (most confident first)", False),
                                       ("Correct", True)):
                    items = image_analysis.gallery(image_analysis.select_examples(
                        _ui.predictions(run), true_class=run_names.index(class_name),
                        correct=correct, limit=12), images, run.metrics)
                    st.markdown(f"{title}: {len(items)} shown")
                    _ui.show_gallery(run, items, key=f"compare-explain-{run.run_id}-{row}-"
                                                     f"{correct}")

with _ui.guard("Near misses"):
    st.subheader("Near misses of each model")
    rows, skipped = [], []
    for label, run in counted:
        counts = error_analysis.near_misses(run.metrics)
        if isinstance(counts, error_analysis.NotApplicable):
            skipped.append(f"{label} (run {run.run_id}): {counts.reason}")
        else:
            rows.append((label, run.run_id, counts))
    if rows:
        st.plotly_chart(near_misses_figure(rows), width="stretch")
        st.caption("The counted run of each model: "
                   + ", ".join(run_id for _, run_id, _ in rows)
                   + ". Examples of each kind: the Errors page.")
    for line in skipped:
        st.caption(line)
