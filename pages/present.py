"""Present: the stakeholder view, without controls, and the report to take away."""

from datetime import UTC, datetime

import streamlit as st

from cifar_core.analysis import classes as class_analysis
from cifar_core.analysis import report
from cifar_core.analysis.runs import model_title, progression_points
from cifar_core.charts.classes import extremes_figure
from cifar_core.charts.confusion import confusion_figure
from cifar_core.charts.progression import progression_figure
from cifar_core.charts.style import square_cells
from cifar_core.reports.card import run_card_markdown
from cifar_core.reports.html import build_html_report
from cifar_core.reports.outputs import FORMATS, build_report, report_file_name
from pages import _ui

_ui.page_frame()

records = _ui.runs()
scope, datasets, counting = _ui.scope_and_counting()
title = report.report_title(counting)
st.title(title)
if not counting:
    st.info("Nothing to present yet: no completed runs. See the **Overview** page.")
    st.stop()

points = progression_points(counting)
st.caption(f"Data: {datasets[scope]}. Each number names its run; the downloadable report "
           "lists every run's configuration.")
numbers = report.headline_numbers(points)
for column, number in zip(st.columns(len(numbers)), numbers, strict=True):
    column.metric(number.label, f"{100 * number.value:.1f}%", help=f"run {number.run_id}")
    column.caption(f"{number.detail} · run {number.run_id}")

st.plotly_chart(progression_figure(points, title="Test accuracy by model"), width="stretch",
                config={"displayModeBar": False})

focus = report.focus_run(counting)
with _ui.guard("Inside the best model"):
    st.subheader(f"Inside {model_title(focus.model_number)}")
    st.caption(f"run {focus.run_id}")
    # One chart per row: beside another chart the 20x20 matrix shrinks to a strip whose
    # cells and names cannot be read.
    if class_analysis.has_superclasses(focus.metrics):
        st.plotly_chart(square_cells(confusion_figure(
            class_analysis.confusion_matrix(focus.metrics, "superclass"),
            class_analysis.superclass_names(focus.metrics), normalize=True,
            selectable=False, title="Superclass confusion (% of each true superclass)")),
            width="stretch", config={"displayModeBar": False})
    extremes = class_analysis.weakest_and_strongest(focus.metrics, "f1", 8)
    st.plotly_chart(extremes_figure(extremes), width="stretch",
                    config={"displayModeBar": False})
    if extremes.message:
        st.caption(extremes.message)

stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
left, middle, right = st.columns(3)
with _ui.guard("Preparing the downloads"):
    left.download_button(
        "Download the report (HTML)", type="primary", on_click="ignore",
        data=lambda: build_html_report(records, counting, title=title),
        file_name=f"cifar-report-{stamp}.html", mime="text/html",
        help="One self-contained file: charts, numbers, run ids and configurations.")
    middle.download_button("Metrics of all runs (CSV)", on_click="ignore",
                           data=report.metrics_csv(records, counting),
                           file_name=f"cifar-metrics-{stamp}.csv", mime="text/csv")
    right.download_button("Per-class metrics of the best model (CSV)", on_click="ignore",
                          data=report.per_class_csv(focus), file_name=f"{focus.run_id}-classes.csv",
                          mime="text/csv", help=f"run {focus.run_id}")


def _drawn_download(column, fmt: str, what: str) -> None:
    """A PDF or deck, drawn by a headless Chromium only when asked (a few seconds): a
    button, then its download, kept for this session while the counted runs stay the same."""
    key = f"present_{fmt}"
    made_for = (title, tuple(sorted(r.run_id for r in counting.values())))
    held = st.session_state.get(key)
    slot = column.empty()  # the button, replaced by the download once the file is drawn
    if not (held and held["for"] == made_for):
        if not slot.button(f"Prepare the {what}", key=f"present_prepare_{fmt}",
                           help="Draws the charts with a headless Chromium: a few seconds."):
            return
        with column, st.spinner(f"Drawing the {what}..."):
            data = build_report(fmt, records, counting, title=title)
        held = st.session_state[key] = {"for": made_for, "data": data,
                                        "name": report_file_name(fmt)}
    slot.download_button(f"Download the {what}", data=held["data"], file_name=held["name"],
                           mime=FORMATS[fmt].media_type, on_click="ignore", type="primary",
                           key=f"present_download_{fmt}",
                           help="The report's content, runs and configurations included.")


pdf_column, slides_column, card_column = st.columns(3)
with _ui.guard("Preparing the PDF"):
    _drawn_download(pdf_column, "pdf", "report (PDF)")
with _ui.guard("Preparing the slides"):
    _drawn_download(slides_column, "pptx", "slides (PPTX)")
with _ui.guard("Preparing the model card"):
    # The best model's card; any run's is on the Classes page (the sidebar's run) and from
    # `cifar-core card --run RUN`. This page keeps no controls of its own: it is presented.
    card_column.download_button(
        "Model card of the best model (Markdown)", on_click="ignore",
        data=lambda: run_card_markdown(focus), file_name=f"{focus.run_id}-model-card.md",
        mime="text/markdown", key="present_download_card",
        help=f"run {focus.run_id}: what it is, its data, numbers, limits and provenance")
