"""Model 7's search as parallel coordinates, the chosen configuration highlighted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cifar_core.analysis.trials import Trials
from cifar_core.charts.style import HIGHLIGHT, NEUTRAL, base_layout


def _dimension(values: pd.Series, label: str, categorical: bool = False) -> dict:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not categorical:
        return dict(label=label, values=numeric.astype(float).to_numpy())
    categories = list(dict.fromkeys(values.astype(str)))
    codes = values.astype(str).map({c: i for i, c in enumerate(categories)})
    return dict(label=label, values=codes.to_numpy(dtype=float),
                tickvals=list(range(len(categories))), ticktext=categories)


def trials_parallel_figure(trials: Trials, chosen: int | None = None,
                           title: str | None = "Search trials") -> go.Figure:
    """One line per trial through stage, each hyperparameter and the mean score.

    The chosen trial (a row index of ``trials.frame``) is drawn in the highlight colour,
    every other trial in grey.
    """
    frame = trials.frame
    dimensions = []
    if trials.stage:
        dimensions.append(_dimension(frame[trials.stage], "stage", categorical=True))
    dimensions += [_dimension(frame[c], c) for c in trials.hyperparameters]
    dimensions.append(_dimension(frame[trials.score], f"{trials.score} (score)"))
    flag = np.zeros(len(frame))
    if chosen is not None and chosen in frame.index:
        flag[frame.index.get_loc(chosen)] = 1.0
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line=dict(color=flag, colorscale=[[0, NEUTRAL], [1, HIGHLIGHT]], cmin=0, cmax=1)))
    fig = base_layout(fig, title, height=440)
    fig.update_layout(margin=dict(l=60, r=60, t=110, b=30))
    return fig
