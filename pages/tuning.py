"""Tuning: model 7's search trials, stage 1 (random) and stage 2 (grid)."""

from pathlib import Path

import streamlit as st

from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.trials import (
    TRIALS_FILE,
    chosen_trial,
    read_trials,
    stage_name,
    stages_chosen_first,
)
from cifar_core.charts.tuning import trials_parallel_figure
from pages import _ui

_ui.page_frame()

st.title("Tuning")
searched = [r for r in _ui.runs() if r.readable and Path(r.path, TRIALS_FILE).is_file()]
if not searched:
    st.info("No hyperparameter search yet. Model 7 searches its head and training settings "
            "(random search with 3-fold cross-validation, then a grid) and writes every "
            f"trial to {TRIALS_FILE} in its run folder; start one on the **Train** page or "
            "with `cifar-core train --model 7`.")
    st.stop()

labels = {r.run_id: run_analysis.run_label(r) for r in searched}
current = st.session_state.get(_ui.RUN_KEY)
run_id = st.selectbox("Search run", list(labels), format_func=labels.get,
                      index=list(labels).index(current) if current in labels else 0)
record = run_analysis.find_run(searched, run_id)

with _ui.guard("Reading the trials"):
    trials = read_trials(record.path)
    chosen, reason = chosen_trial(trials, record.config)
    if record.status != "completed":
        st.warning(f"This run is {record.status}: the trials so far are shown.")
    for note in trials.notes:
        st.caption(note)
    st.plotly_chart(trials_parallel_figure(trials, chosen), width="stretch")
    st.caption(f"Highlighted: {reason}. Each line is one trial; drag along an axis to filter.")
    table = trials.frame.assign(chosen=trials.frame.index == chosen)
    stages = stages_chosen_first(trials, chosen)  # tabs open on the first: the winner's
    if len(stages) > 1:
        names = [stage_name(s) + (" · chosen trial" if i == 0 and chosen is not None else "")
                 for i, s in enumerate(stages)]
        for stage, tab in zip(stages, st.tabs(names), strict=True):
            tab.dataframe(table[table[trials.stage] == stage], hide_index=True, width="stretch")
    else:
        st.dataframe(table, hide_index=True, width="stretch")
