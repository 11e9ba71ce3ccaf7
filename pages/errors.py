"""Errors inside one run: calibration, near misses, top losses. Every computation and figure
comes from ``cifar_core.analysis.errors`` and ``cifar_core.charts.errors``; run against run is
on the Compare page."""

import streamlit as st

from cifar_core.analysis import classes as class_analysis
from cifar_core.analysis import errors as error_analysis
from cifar_core.analysis import images as image_analysis
from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.names import readable
from cifar_core.charts.errors import reliability_figure
from pages import _ui

_ui.page_frame()
PAGE_SIZE = 12

st.title("Errors")
record = _ui.require_run()
metrics = record.metrics
st.caption(f"Run {run_analysis.run_label(record)}")
same_classes = _ui.runs_over_classes_of(record)
labels = {r.run_id: run_analysis.run_label(r) for r in same_classes}


def show_gallery(examples, what: str, key: str) -> None:
    """Enlarged test images of ``examples`` with their classes in words, each explainable."""
    images = _ui.test_images(record)
    if images is None:
        return
    items = image_analysis.gallery(examples, images, metrics)
    st.markdown(f"**{what}**: {len(items)} shown")
    _ui.show_gallery(record, items, key=f"{key}-{record.run_id}")


with _ui.guard("Calibration"):
    st.subheader("Calibration: is the model as sure as it is right?")
    others = [run_id for run_id in labels if run_id != record.run_id]
    compare = st.selectbox("Side by side with", [None, *others],
                           format_func=lambda run_id: "no other run" if run_id is None
                           else labels[run_id],
                           help="Another run over the same classes.", key="errors_compare")
    calibrations = {record.run_id: error_analysis.run_calibration(_ui.predictions(record))}
    if compare:
        other = run_analysis.find_run(same_classes, compare)
        calibrations[compare] = error_analysis.run_calibration(_ui.predictions(other))
    st.plotly_chart(reliability_figure(calibrations), width="stretch")
    for run_id, result in calibrations.items():
        st.markdown(f"**{run_id}**: "
                    + error_analysis.calibration_in_words(result, f"run {run_id}"))
    by_super = error_analysis.calibration_by_superclass(_ui.predictions(record), metrics)
    if isinstance(by_super, error_analysis.NotApplicable):
        st.caption(by_super.reason)
    else:
        percent = st.column_config.NumberColumn(format="percent")
        st.markdown("Per true superclass, the worst calibrated first:")
        st.dataframe(by_super, hide_index=True, width="stretch", height=280,
                     column_config={"accuracy": percent, "confidence": percent,
                                    "ece": st.column_config.NumberColumn(
                                        "ECE", format="percent",
                                        help="expected calibration error")})

with _ui.guard("Near misses"):
    st.subheader("Near misses: errors inside the true superclass")
    st.caption("Across models: the Compare page.")
    mine = error_analysis.near_misses(metrics)
    if isinstance(mine, error_analysis.NotApplicable):
        st.caption(f"This run: {mine.reason}")
    else:
        st.markdown(f"This run: {mine.errors:,} errors on {mine.total:,} test images, "
                    f"{mine.inside:,} ({100 * mine.inside_share:.0f}%) inside the true "
                    f"superclass.")
        kind = st.radio("Show", ["inside the superclass", "outside it"], horizontal=True,
                        key="errors_near_kind")
        positions = error_analysis.near_miss_examples(
            _ui.predictions(record), metrics, inside=kind.startswith("inside"))
        show_gallery(error_analysis.examples_at(_ui.predictions(record), positions),
                     f"Errors {kind}, the most confident first", key=f"errors-near-{kind}")

with _ui.guard("Top losses"):
    st.subheader("Top losses: the test images the model gets most wrong")
    left, right = st.columns(2)
    superclass = None
    if class_analysis.has_superclasses(metrics) and metrics.get("label_set") == "fine":
        superclass = left.selectbox("True superclass", [None,
                                    *class_analysis.superclass_names(metrics)],
                                    format_func=lambda s: "all" if s is None else readable(s))
    page = right.number_input("Page", min_value=1, value=1, step=1, key="errors_top_page")
    table = error_analysis.top_losses(_ui.predictions(record), metrics, superclass=superclass,
                                      offset=(int(page) - 1) * PAGE_SIZE, count=PAGE_SIZE)
    if isinstance(table, error_analysis.NotApplicable):
        st.caption(table.reason)
    elif table.empty:
        st.caption("No more images on this page.")
    else:
        percent = st.column_config.NumberColumn(format="percent")
        st.dataframe(table.drop(columns=["position"]), hide_index=True, width="stretch",
                     column_config={"p(true)": percent, "p(predicted)": percent,
                                    "loss": st.column_config.NumberColumn(format="%.2f")})
        show_gallery(error_analysis.examples_at(_ui.predictions(record), table["position"]),
                     f"Page {int(page)}", key=f"errors-top-{superclass}-{int(page)}")
