"""Confusion: the superclass matrix (choose a cell to see its test images) and the fine-class
matrix within one superclass."""

import streamlit as st

from cifar_core.analysis import classes as class_analysis
from cifar_core.analysis import images as image_analysis
from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.names import readable
from cifar_core.charts.confusion import confusion_figure, selected_cell
from pages import _ui

_ui.page_frame()

TRUE_KEY, PRED_KEY, SEEN_KEY = "confusion-true", "confusion-predicted", "confusion-seen-cell"
PAIR_RUN_KEY = "confusion-pair-run"  # the run the chosen pair belongs to

st.title("Confusion")
record = _ui.require_run()
metrics = record.metrics
st.caption(f"Run {run_analysis.run_label(record)}")

by_superclass = class_analysis.has_superclasses(metrics)
level = "superclass" if by_superclass else "output"
normalize = st.radio("Show", ["counts", "% of each true class"], horizontal=True) != "counts"

with _ui.guard("Confusion matrix"):
    names = (class_analysis.superclass_names(metrics) if by_superclass
             else class_analysis.class_names(metrics))
    matrix = class_analysis.confusion_matrix(metrics, level)
    st.subheader(f"{len(names)}x{len(names)} " + ("superclass" if by_superclass else "class")
                 + " confusion")
    if st.session_state.get(PAIR_RUN_KEY) != record.run_id:
        # Another run: its own most confused pair, not the last run's (whose count here
        # would be meaningless), and no click of the last run's chart.
        for key in (TRUE_KEY, PRED_KEY, SEEN_KEY):
            st.session_state.pop(key, None)
        st.session_state[PAIR_RUN_KEY] = record.run_id
    event = st.plotly_chart(
        confusion_figure(matrix, names, normalize=normalize,
                         title="rows: true, columns: predicted; click a cell"),
        width="stretch", on_select="rerun", selection_mode="points",
        key=f"confusion-chart-{record.run_id}")  # a chart per run: selections don't carry
    selection = event.get("selection", {}) if isinstance(event, dict) else {}
    cell = selected_cell(selection.get("points"))
    if cell is not None and cell != st.session_state.get(SEEN_KEY):
        st.session_state[SEEN_KEY] = cell  # a new click moves the pickers below
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = names[cell[0]], names[cell[1]]
    if TRUE_KEY not in st.session_state:
        pairs = class_analysis.most_confused_pairs(metrics, 1, level)
        first = (pairs["true class"].iloc[0], pairs["predicted as"].iloc[0]) if len(pairs) \
            else (names[0], names[0])
        st.session_state[TRUE_KEY], st.session_state[PRED_KEY] = first
    if st.session_state[TRUE_KEY] not in names or st.session_state[PRED_KEY] not in names:
        st.session_state[TRUE_KEY] = st.session_state[PRED_KEY] = names[0]
    left, right = st.columns(2)
    true_name = left.selectbox("True", names, key=TRUE_KEY, format_func=readable)
    pred_name = right.selectbox("Predicted", names, key=PRED_KEY, format_func=readable)
    i, j = names.index(true_name), names.index(pred_name)
    st.markdown(f"**{int(matrix[i, j])} test images** of *{readable(true_name)}* predicted as "
                f"*{readable(pred_name)}*" + (" (correct)" if i == j else ""))
    images = _ui.test_images(record) if matrix[i, j] else None
    if images is not None:
        examples = image_analysis.cell_examples(_ui.predictions(record), metrics, i, j,
                                                level="superclass" if by_superclass
                                                else "output", limit=24)
        items = image_analysis.gallery(examples, images, metrics)
        _ui.show_gallery(record, items, key=f"confusion-explain-{record.run_id}-{i}-{j}")

if by_superclass and metrics.get("label_set") == "fine":
    with _ui.guard("Fine-class confusion"):
        st.subheader("Fine classes within one superclass")
        supers = class_analysis.superclass_names(metrics)
        picked = st.session_state.get(TRUE_KEY)
        superclass = st.selectbox("Superclass", supers, format_func=readable,
                                  index=supers.index(picked) if picked in supers else 0,
                                  help="Defaults to the true superclass chosen above.")
        fine, rows, columns = class_analysis.fine_confusion_within(metrics, superclass)
        title = f"{readable(superclass)}: true fine class vs predicted"
        st.plotly_chart(confusion_figure(fine, rows, columns, normalize=normalize,
                                         selectable=False, title=title), width="stretch")
