"""Error-analysis figures: reliability diagrams, near misses across models, the learning
curves of several runs on one chart, and the class x model heatmap. Built from the results of
``cifar_core.analysis.errors`` and ``.compare`` and from ``history.csv`` rows; each figure
names the runs behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from cifar_core.analysis.classes import metric_name
from cifar_core.analysis.compare import ClassByModel
from cifar_core.analysis.errors import Calibration, NearMisses
from cifar_core.analysis.names import readable
from cifar_core.charts.style import (
    BAD,
    FINE,
    HIGHLIGHT,
    NEUTRAL,
    REFERENCE,
    SEQUENTIAL,
    SUPER,
    base_layout,
)

RUN_COLOURS = (FINE, SUPER, "#2e8b57", "#7a4fb3", "#c0392b", "#00838f", "#8d6e63", "#5c6bc0")


def reliability_figure(calibrations: Mapping[str, Calibration]) -> go.Figure:
    """Accuracy against confidence per bin for one or more runs (keyed by run id), with the
    diagonal of perfect calibration; the bar underneath each curve is the share of test
    images in each bin, and the hover gives the counts."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="perfectly calibrated",
                             line=dict(color=REFERENCE, dash="dot", width=1),
                             hoverinfo="skip"))
    for i, (run_id, result) in enumerate(calibrations.items()):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        centres = 50 * (result.edges[:-1] + result.edges[1:])
        filled = result.counts > 0
        share = 100 * result.counts / max(result.total, 1)
        fig.add_trace(go.Bar(x=centres, y=share, name=f"{run_id}: share of images",
                             marker_color=colour, opacity=0.18, width=100 / len(centres) * 0.9,
                             showlegend=False,
                             hovertemplate="%{customdata:,} images (%{y:.1f}%)"
                                           "<extra>" + run_id + "</extra>",
                             customdata=result.counts))
        fig.add_trace(go.Scatter(
            x=100 * result.confidence[filled], y=100 * result.accuracy[filled],
            mode="lines+markers", name=f"{run_id} (ECE {100 * result.ece:.1f})",
            line=dict(color=colour, width=2), marker=dict(size=7),
            customdata=np.stack([result.counts[filled],
                                 100 * result.edges[:-1][filled],
                                 100 * result.edges[1:][filled]], axis=1),
            hovertemplate="confidence %{customdata[1]:.0f}-%{customdata[2]:.0f}%: "
                          "mean %{x:.1f}%, right %{y:.1f}% of %{customdata[0]:,} "
                          "images<extra>" + run_id + "</extra>"))
    base_layout(fig, "Reliability: how often the model is right when it is this sure", 480)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="confidence of the top class (%)", range=[0, 100.5],
                     ticksuffix="%")
    fig.update_yaxes(title="accuracy in the bin (%)", range=[0, 102], ticksuffix="%")
    return fig


def near_misses_figure(rows: Sequence[tuple[str, str, NearMisses]]) -> go.Figure:
    """Test errors of each run (label, run id, counts) as stacked bars: inside the true
    superclass (a near miss) and outside it, as a share of the test images."""
    labels = [label for label, _, _ in rows]
    run_ids = [run_id for _, run_id, _ in rows]
    fig = go.Figure()
    for name, colour, pick in (("wrong class, right superclass", SUPER, lambda n: n.inside),
                               ("wrong superclass", BAD, lambda n: n.outside)):
        counts = [pick(n) for _, _, n in rows]
        shares = [100 * c / n.total if n.total else 0.0
                  for c, (_, _, n) in zip(counts, rows, strict=True)]
        fig.add_trace(go.Bar(x=labels, y=shares, name=name, marker_color=colour,
                             customdata=np.stack([counts, run_ids], axis=1) if rows else None,
                             hovertemplate="%{customdata[0]} errors (%{y:.1f}% of the test "
                                           "images)<br>run %{customdata[1]}<extra>" + name
                                           + "</extra>"))
    base_layout(fig, "Errors inside and outside the true superclass", 440)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="share of test images (%)", ticksuffix="%", rangemode="tozero")
    fig.update_xaxes(title=None, type="category")
    return fig


LEARNING_METRICS = {"loss": ("loss", "val_loss", "cross-entropy"),
                    "accuracy": ("accuracy", "val_accuracy", "accuracy (%)")}


def learning_curves_figure(histories: Mapping[str, list[dict]], *, metric: str = "loss",
                           by: str = "epoch", log_y: bool = False) -> go.Figure:
    """Training (dashed) and validation (solid) ``metric`` of several runs (keyed by run id)
    on one chart, by epoch or by training time (the cumulative seconds of ``history.csv``)."""
    if metric not in LEARNING_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(LEARNING_METRICS)}")
    if by not in ("epoch", "time"):
        raise ValueError("by must be 'epoch' or 'time'")
    train_key, val_key, title = LEARNING_METRICS[metric]
    scale = 100.0 if metric == "accuracy" else 1.0
    fig = go.Figure()
    for i, (run_id, rows) in enumerate(histories.items()):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        if by == "epoch":
            x = [row.get("epoch") for row in rows]
        else:
            x = list(np.cumsum([row.get("seconds") or 0.0 for row in rows]) / 60.0)
        for key, dash, part in ((train_key, "dash", "training"), (val_key, "solid",
                                                                   "validation")):
            y = [None if row.get(key) is None else scale * row[key] for row in rows]
            if not any(v is not None for v in y):
                continue
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{run_id} {part}",
                                     line=dict(color=colour, dash=dash, width=2),
                                     marker=dict(size=5), legendgroup=run_id))
    base_layout(fig, f"Learning curves: {title}", 480)
    fig.update_xaxes(title="epoch" if by == "epoch" else "training time (min)")
    fig.update_yaxes(title=title, type="log" if log_y else "linear")
    if not fig.data:
        fig.add_annotation(text="no epochs recorded", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font=dict(color=NEUTRAL))
    return fig


def class_by_model_figure(table: ClassByModel, title: str | None = None) -> go.Figure:
    """Classes (rows, grouped by superclass) x runs (columns) coloured by the metric in
    percent. Every cell carries an invisible marker so that a click selects it (see
    ``cifar_core.charts.confusion.confusion_figure``); its ``customdata`` is ``[row, column,
    value, 0]``, read back by ``cifar_core.charts.confusion.selected_cell``."""
    values = 100 * table.values.to_numpy(dtype=float)
    # the superclass beside each class, unless the classes are the superclasses (a coarse run)
    rows = [f"{name} ({readable(sup)})" if sup and readable(sup) != name else name
            for name, sup in zip(table.values.index, table.superclasses, strict=True)]
    columns = list(table.values.columns)
    hover = ("%{y}<br>%{x}: " + metric_name(table.metric) + " %{customdata[V]:.0f}%"
             "<extra></extra>")
    fig = go.Figure(go.Heatmap(z=values, x=columns, y=rows, colorscale=SEQUENTIAL, zmin=0,
                               zmax=100, colorbar=dict(title="%"), hoverinfo="skip"))
    row_index, column_index = (i.ravel() for i in np.indices(values.shape))
    fig.add_trace(go.Scatter(
        x=[columns[c] for c in column_index], y=[rows[r] for r in row_index], mode="markers",
        showlegend=False, name="cells", hovertemplate=hover.replace("V", "2"),
        customdata=np.stack([row_index, column_index, values.ravel(),
                             np.zeros(values.size)], axis=1),
        marker=dict(size=14, symbol="square-open", color=HIGHLIGHT, line=dict(width=3),
                    opacity=0),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0))))
    fig.update_layout(clickmode="event+select", dragmode=False)
    fig.update_xaxes(side="top", type="category")
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=11))
    title = title or (f"{metric_name(table.metric).capitalize()} of every class under each "
                      f"model: runs {', '.join(table.run_ids)}")
    return base_layout(fig, title, height=max(420, 16 * len(rows) + 200))
