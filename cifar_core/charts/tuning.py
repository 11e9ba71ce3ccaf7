"""Model 7's search as parallel coordinates, the chosen configuration highlighted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cifar_core.analysis.trials import Trials
from cifar_core.charts.style import HIGHLIGHT, NEUTRAL, base_layout

MAX_TICKS = 8  # up to this many distinct values: one tick at each, labelled exactly
LOG_SPREAD = 10.0  # positive values spanning this factor or more go on a log10 axis


def number_text(value: float) -> str:
    """A tick label people read: ``1e-4``, ``3e-4``, ``0.01``, ``0.2``, ``256``.

    Plotly's own ticks print small numbers with SI prefixes (``100μ``), which reads as
    micro-something, not as a learning rate.
    """
    value = float(value)
    if value != 0 and abs(value) < 1e-2:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}"


def _dimension(values: pd.Series, label: str, categorical: bool = False) -> dict:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and not categorical:
        numbers = numeric.astype(float).to_numpy()
        distinct = np.unique(numbers)
        logarithmic = bool(distinct.min() > 0 and distinct.max() / distinct.min() >= LOG_SPREAD)
        if logarithmic:  # parcoords has no log axis: plot log10, label with the values
            ticks = distinct if len(distinct) <= MAX_TICKS else 10.0 ** np.arange(
                np.floor(np.log10(distinct.min())), np.ceil(np.log10(distinct.max())) + 1)
            return dict(label=f"{label} (log scale)", values=np.log10(numbers),
                        tickvals=np.log10(ticks).tolist(),
                        ticktext=[number_text(v) for v in ticks])
        if len(distinct) <= MAX_TICKS:
            return dict(label=label, values=numbers, tickvals=distinct.tolist(),
                        ticktext=[number_text(v) for v in distinct])
        return dict(label=label, values=numbers, tickformat="~g")
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
