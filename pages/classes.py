"""Classes: per-class metrics, weakest/strongest, run differences, confusions, galleries."""

import streamlit as st

from cifar_core.analysis import classes as class_analysis
from cifar_core.analysis import images as image_analysis
from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.names import readable
from cifar_core.charts.classes import (
    class_difference_figure,
    confused_pairs_figure,
    extremes_figure,
)
from cifar_core.reports.card import run_card_markdown
from pages import _ui

_ui.page_frame()

st.title("Classes")
record = _ui.require_run()
metrics = record.metrics
caption, card = st.columns([4, 1], vertical_alignment="center")
caption.caption(f"Run {run_analysis.run_label(record)}")
with _ui.guard("Preparing the model card"):
    card.download_button(
        "Model card (Markdown)", on_click="ignore", key="classes_download_card",
        data=lambda: run_card_markdown(record), file_name=f"{record.run_id}-model-card.md",
        mime="text/markdown",
        help=f"run {record.run_id}: what it is, its data, numbers, limits and provenance "
             "(also `cifar-core card --run RUN`)")
percent = st.column_config.NumberColumn(format="percent")

with _ui.guard("Per-class metrics"):
    st.subheader("Per-class precision, recall and F1")
    chosen_supers = None
    if class_analysis.has_superclasses(metrics) and metrics.get("label_set") == "fine":
        chosen_supers = st.multiselect("Only these superclasses",
                                       class_analysis.superclass_names(metrics),
                                       format_func=readable)
    table = class_analysis.per_class_table(metrics, chosen_supers)
    st.dataframe(class_analysis.in_words(table), hide_index=True, width="stretch", height=320,
                 column_config={"precision": percent, "recall": percent, "f1": percent,
                                # None hides the column: without superclasses, or when
                                # the classes are the superclasses (a coarse run)
                                **({} if class_analysis.has_superclasses(metrics)
                                   and metrics.get("label_set") != "coarse"
                                   else {"superclass": None})})

st.subheader("Weakest and strongest classes")
left, right = st.columns(2)
metric = left.selectbox("Rank by", class_analysis.CLASS_METRICS, index=2,
                        format_func=class_analysis.metric_name,
                        help="Also used for the difference between two runs below.")
count = right.slider("Classes on each side", 3, 20, 10)
with _ui.guard("Weakest and strongest classes"):
    extremes = class_analysis.weakest_and_strongest(metrics, metric, count)
    st.plotly_chart(extremes_figure(extremes, record.run_id), width="stretch")
    if extremes.message:
        st.caption(extremes.message)

with _ui.guard("Difference between two runs"):
    st.subheader("Difference between two runs")
    names = class_analysis.class_names(metrics)
    others = [r for r in _ui.usable_runs() if r.run_id != record.run_id
              and (r.metrics or {}).get("class_names") == names]
    if not others:
        st.caption("No other completed run over the same classes to compare with.")
    else:
        labels = {r.run_id: run_analysis.run_label(r) for r in others}
        other_id = st.selectbox("Compare with (run A)", list(labels), format_func=labels.get)
        other = run_analysis.find_run(others, other_id)
        diff = class_analysis.class_difference(other.metrics, metrics, metric)
        st.plotly_chart(class_difference_figure(diff, other.run_id, record.run_id, metric),
                        width="stretch")

with _ui.guard("Most confused pairs"):
    st.subheader("Most confused class pairs")
    pairs = class_analysis.most_confused_pairs(metrics, 15)
    if pairs.empty:
        st.caption("No confusions: every test image was classified correctly.")
    else:
        st.plotly_chart(confused_pairs_figure(pairs, record.run_id), width="stretch")

with _ui.guard("Gallery"):
    st.subheader("Test images of one class")
    names = class_analysis.class_names(metrics)
    weakest_one = class_analysis.weakest_and_strongest(metrics, "f1", 1).weakest
    weakest_name = weakest_one["class"].iloc[0] if len(weakest_one) else names[0]
    class_name = st.selectbox("Class", names, index=names.index(weakest_name),
                              format_func=readable,
                              help="Defaults to the weakest class by F1.")
    preds = _ui.predictions(record)
    images = _ui.test_images(record)
    if images is not None:
        index = names.index(class_name)
        for title, correct in (("Misclassified (most confident first)", False),
                               ("Correct, for contrast", True)):
            items = image_analysis.gallery(
                image_analysis.select_examples(preds, true_class=index, correct=correct,
                                               limit=12), images, metrics)
            st.markdown(f"**{title}**: {len(items)} shown")
            _ui.show_gallery(record, items,
                             key=f"classes-explain-{record.run_id}-{index}-{correct}")
