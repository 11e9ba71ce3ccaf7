"""Confusion matrices as labelled heatmaps whose cells can be selected in the app."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from cifar_core.analysis.classes import normalize_rows
from cifar_core.charts.style import SEQUENTIAL, base_layout

TEXT_LIMIT = 30  # write values into the cells up to this many columns


def confusion_figure(matrix: np.ndarray, true_labels: Sequence[str],
                     predicted_labels: Sequence[str] | None = None, *,
                     normalize: bool = False, title: str | None = None,
                     selectable: bool = True) -> go.Figure:
    """Rows are true classes, columns predicted ones; counts or row-normalized percent.

    With ``selectable``, an invisible marker sits on every cell so that clicking a cell
    selects it (plotly heatmaps do not emit selections themselves); its ``customdata`` is
    ``[row, column]``, which ``selected_cell`` reads back.
    """
    matrix = np.asarray(matrix)
    predicted_labels = list(predicted_labels if predicted_labels is not None else true_labels)
    true_labels = list(true_labels)
    if matrix.shape != (len(true_labels), len(predicted_labels)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(true_labels)} x "
                         f"{len(predicted_labels)} labels")
    counts = matrix.astype(np.int64)
    shares = normalize_rows(counts) * 100
    z = shares if normalize else counts
    show_text = len(predicted_labels) <= TEXT_LIMIT
    text = (np.vectorize(lambda v: f"{v:.0f}" if v >= 0.5 else "")(shares) if normalize
            else np.where(counts > 0, counts.astype(str), "")) if show_text else None
    custom = np.dstack([counts, shares])
    fig = go.Figure(go.Heatmap(
        z=z, x=predicted_labels, y=true_labels, colorscale=SEQUENTIAL, customdata=custom,
        text=text, texttemplate="%{text}" if show_text else None,
        colorbar=dict(title="% of row" if normalize else "images", ticksuffix=""),
        zmin=0, zmax=100 if normalize else max(1, int(counts.max())),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[0]} images "
                      "(%{customdata[1]:.1f}% of the row)<extra></extra>"))
    if selectable:
        rows, cols = np.indices(counts.shape)
        fig.add_trace(go.Scatter(
            x=[predicted_labels[c] for c in cols.ravel()],
            y=[true_labels[r] for r in rows.ravel()],
            mode="markers", marker=dict(size=18, opacity=0, symbol="square"),
            customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
            hoverinfo="skip", showlegend=False, name="cells"))
        fig.update_layout(clickmode="event+select", dragmode=False)
    side = max(460, 28 * len(true_labels) + 220)
    fig.update_xaxes(title="predicted", tickangle=-45, side="bottom", type="category")
    fig.update_yaxes(title="true", autorange="reversed", type="category")
    return base_layout(fig, title, height=side)


def selected_cell(points: Sequence[dict] | None) -> tuple[int, int] | None:
    """(row, column) of the first selected cell from a plotly selection event, or None."""
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(custom, (list, tuple)) and len(custom) >= 2:
            try:
                return int(custom[0]), int(custom[1])
            except (TypeError, ValueError):
                continue
    return None
