"""Overview: the accuracy progression, the runs table, which run counts per model."""

import streamlit as st

from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.data_status import data_status
from cifar_core.charts.progression import progression_figure
from pages import _ui

_ui.page_frame()

st.title("Overview")
records = _ui.runs()

if not records:
    st.markdown(
        "This dashboard trains and compares the seven CIFAR-100 classifiers of the report, "
        "from a one-layer CNN (model 1) to a tuned MobileNet (model 7), and model 8 beyond "
        "them (MobileNet at 144 px, partly fine-tuned), and explains where "
        "each one fails. Every number comes from a run folder under "
        f"`{_ui.artifacts()}`, with the configuration, data and code version behind it.\n\n"
        "There are no runs yet. The quickest start trains models 1 to 5 with the `quick` "
        "profile (a few epochs each, one after the other) in the background; you can follow "
        "them on the **Train** page and close the browser meanwhile.")
    status = data_status(_ui.data_source())
    if status.found:
        st.caption(f"Training data: {status.location}")
    else:
        st.warning("CIFAR-100 was not found on this machine. Training downloads it (about "
                   "170 MB) where the network allows; otherwise:\n\n" + (status.help or ""))
    if st.button("Train the quick progression (models 1-5)", type="primary"):
        try:
            from cifar_core.jobs import submit_progression
        except ImportError:
            st.error("The job system is not available in this installation. From a terminal: "
                     "`for n in 1 2 3 4 5; do cifar-core train --model $n --profile quick; "
                     "done`")
        else:
            with _ui.guard("Starting the training jobs"):
                run_ids = submit_progression(_ui.artifacts(), models=range(1, 6),
                                             profile="quick", data=_ui.data_source())
                st.success(f"Queued {len(run_ids)} training jobs ({', '.join(run_ids)}). "
                           "Follow them on the Train page; finished runs appear here.")
    st.stop()

scope, datasets, _ = _ui.scope_and_counting()
if not datasets:
    st.info("No completed run yet: the runs below are queued, running or failed. Follow them "
            "on the **Train** page.")
    st.dataframe(run_analysis.runs_table(records), hide_index=True, width="stretch")
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
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={
        "top-1 %": st.column_config.NumberColumn(format="%.1f%%"),
        "top-5 %": st.column_config.NumberColumn(format="%.1f%%"),
        "superclass %": st.column_config.NumberColumn(format="%.1f%%"),
        "training time (s)": st.column_config.NumberColumn(format="%.1f"),
        "counts": st.column_config.CheckboxColumn(help="counted in the progression"),
    })
