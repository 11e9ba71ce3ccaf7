"""Training curves: loss and accuracy per epoch, training and validation, side by side.

Built from ``history.csv`` rows (``cifar_core.runs.store.read_history``), so the same figure
draws a finished run and one still training (the Train page redraws it every few seconds).
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cifar_core.charts.style import FINE, NEUTRAL, SUPER, base_layout

TRAIN_COLOR = FINE
VALIDATION_COLOR = SUPER
SERIES = (  # (column, panel, legend name, colour, dash)
    ("loss", 1, "training", TRAIN_COLOR, "solid"),
    ("val_loss", 1, "validation", VALIDATION_COLOR, "dash"),
    ("accuracy", 2, "training", TRAIN_COLOR, "solid"),
    ("val_accuracy", 2, "validation", VALIDATION_COLOR, "dash"),
)


def _number(value) -> float | None:
    """A plottable float, or None for missing / non-finite values (gaps in the line)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def training_curves_figure(history_rows: list[dict], *, title: str | None = None,
                           height: int = 320) -> go.Figure:
    """Loss (left) and accuracy (right) against epoch, training solid, validation dashed.

    ``history_rows`` are dicts with ``epoch`` and any of ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``; rows without an epoch are skipped, missing values leave
    gaps. With no rows the figure says that no epoch has finished yet.
    """
    rows = sorted((row for row in history_rows if _number(row.get("epoch")) is not None),
                  key=lambda row: _number(row["epoch"]))
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                           horizontal_spacing=0.12)
    epochs = [int(_number(row["epoch"])) for row in rows]
    in_legend: set[str] = set()  # one legend entry per series name, for both panels
    for column, panel, name, color, dash in SERIES:
        values = [_number(row.get(column)) for row in rows]
        if not any(value is not None for value in values):
            continue
        figure.add_trace(go.Scatter(
            x=epochs, y=values, name=name, legendgroup=name, showlegend=name not in in_legend,
            mode="lines+markers", line={"color": color, "dash": dash},
            hovertemplate=f"{name} {column.replace('val_', '')}: %{{y:.4f}}<br>"
                          "epoch %{x}<extra></extra>"), row=1, col=panel)
        in_legend.add(name)
    if not rows:
        figure.add_annotation(text="No epoch has finished yet", showarrow=False,
                              xref="paper", yref="paper", x=0.5, y=0.5,
                              font={"size": 14, "color": NEUTRAL})
    figure.update_xaxes(title_text="epoch", tickformat="d", rangemode="tozero")
    figure.update_xaxes(dtick=1 if len(epochs) <= 10 else None)
    figure.update_yaxes(title_text="loss", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1], row=1, col=2)
    base_layout(figure, title=title, height=height)
    # Legend below the panels: above them it would sit on the panel titles.
    figure.update_layout(margin={"t": 70 if title else 40, "b": 40},
                         legend={"yanchor": "top", "y": -0.22, "xanchor": "center", "x": 0.5})
    return figure
