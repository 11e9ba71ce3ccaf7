"""Confusion matrices as labelled heatmaps whose cells can be selected in the app."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from cifar_core.analysis.classes import normalize_rows
from cifar_core.analysis.names import readable_all
from cifar_core.charts.style import HIGHLIGHT, SEQUENTIAL, base_layout

TEXT_LIMIT = 30  # write values into the cells up to this many columns
CELL_MARKER_SIZE = 18  # px: the clickable marker and the outline of the selected cell


def confusion_figure(matrix: np.ndarray, true_labels: Sequence[str],
                     predicted_labels: Sequence[str] | None = None, *,
                     normalize: bool = False, title: str | None = None,
                     selectable: bool = True) -> go.Figure:
    """Rows are true classes, columns predicted ones; counts or row-normalized percent.

    With ``selectable``, an invisible marker sits on every cell so that clicking a cell
    selects it (plotly heatmaps do not emit selections themselves); its ``customdata`` is
    ``[row, column]``, which ``selected_cell`` reads back. The markers, not the heatmap, carry
    the hover text: plotly selects on click only what the click hovers, and a trace with
    ``hoverinfo="skip"`` is never hovered, so hiding the markers from hover (as an earlier
    version did) made every click select nothing. The selected cell gets an outline.

    Labels are shown in words (``fruit and vegetables``); the matrix keeps its order, so
    ``names[row]`` of the caller's own list is the selected class.
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
    columns, rows = readable_all(predicted_labels), readable_all(true_labels)
    hover = ("true %{y}<br>predicted %{x}<br>%{customdata[COUNT]:.0f} images "
             "(%{customdata[SHARE]:.1f}% of the row)<extra></extra>")
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=rows, colorscale=SEQUENTIAL, text=text,
        texttemplate="%{text}" if show_text else None,
        colorbar=dict(title="% of row" if normalize else "images", ticksuffix=""),
        zmin=0, zmax=100 if normalize else max(1, int(counts.max())),
        customdata=np.dstack([counts, shares]),
        hovertemplate=hover.replace("COUNT", "0").replace("SHARE", "1"),
        hoverinfo="skip" if selectable else None))  # the cell markers carry the hover
    if selectable:
        row_index, column_index = (i.ravel() for i in np.indices(counts.shape))
        fig.add_trace(go.Scatter(
            x=[columns[c] for c in column_index], y=[rows[r] for r in row_index],
            mode="markers", name="cells", showlegend=False,
            hovertemplate=hover.replace("COUNT", "2").replace("SHARE", "3"),
            customdata=np.stack([row_index, column_index, counts.ravel(), shares.ravel()],
                                axis=1),
            marker=dict(size=CELL_MARKER_SIZE, symbol="square-open", color=HIGHLIGHT,
                        line=dict(width=3), opacity=0),
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0))))
        fig.update_layout(clickmode="event+select", dragmode=False)
    side = max(460, 28 * len(true_labels) + 220)
    fig.update_xaxes(title="predicted", tickangle=-45, side="bottom", type="category")
    fig.update_yaxes(title="true", autorange="reversed", type="category")
    return base_layout(fig, title, height=side)


def selected_cell(points: Sequence[dict] | None) -> tuple[int, int] | None:
    """(row, column) of the first selected cell marker in a plotly selection event, or None.

    Streamlit hands a point's ``customdata`` over as a list or, as Streamlit 1.67 does in
    the browser, as a dict keyed ``"0"``, ``"1"``, ...; both are read. Only the markers'
    ``[row, column, count, share]`` count: a heatmap point's ``[count, share]`` is never
    taken for a cell.
    """
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(custom, dict):
            custom = [custom.get(str(i), custom.get(i)) for i in range(len(custom))]
        if not isinstance(custom, (list, tuple)) or len(custom) != 4:
            continue
        try:
            return int(custom[0]), int(custom[1])
        except (TypeError, ValueError):
            continue
    return None
