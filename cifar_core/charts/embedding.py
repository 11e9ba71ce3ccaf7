"""The embedding map figure: test images as points placed by ``analysis.embedding``, coloured
by class or superclass, the errors marked, one image and its neighbours highlighted."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from cifar_core.charts.style import HIGHLIGHT, base_layout

# Enough distinct colours for 20 superclasses or 10 classes without repeats; 100 classes
# repeat them (a click on a legend entry shows one group alone).
PALETTE = (*plotly.colors.qualitative.Dark24, *plotly.colors.qualitative.Light24,
           *plotly.colors.qualitative.Alphabet)
ERROR_SYMBOL, RIGHT_SYMBOL = "x", "circle"
LEGEND_ON_TOP_MAX = 20  # more groups than this: the legend goes beside the plot
# WebGL (Scattergl) by default: in Chromium on this 2-core VM without a GPU (SwiftShader), 10,000
# points are drawn in about 0.5 s against 1.1-1.3 s as SVG paths, the largest part of opening the
# page (BENCHMARKS.md, "Embedding map"). ``webgl=False`` draws SVG, for browsers without WebGL.


def embedding_figure(table: pd.DataFrame, *, colour_by: str = "true class", run_id: str = "",
                     how: str = "", chosen: int | None = None,
                     neighbours: Sequence[int] = (), height: int = 640,
                     hover_labels: bool = True, webgl: bool = True) -> go.Figure:
    """One point per row of ``analysis.embedding.map_table``, one legend entry per value of
    ``colour_by`` (``"true class"`` or ``"true superclass"``); misclassified images are
    crosses. ``chosen`` (a row position) is ringed and its ``neighbours`` circled. Each
    point's ``customdata`` starts with its row position (``selected_position`` reads it).

    ``hover_labels=False`` leaves out plotly's own hover label (the image number and classes
    in words) while hover events still fire: for the page's hover thumbnail
    (``charts.embedding_hover``), whose card shows the image with those words instead.
    ``webgl=False`` draws the points as SVG (slower; for a browser without WebGL)."""
    if colour_by not in table:
        raise ValueError(f"no column {colour_by!r} to colour by")
    scatter = go.Scattergl if webgl else go.Scatter
    fig = go.Figure()
    groups = list(dict.fromkeys(sorted(table[colour_by])))
    for i, group in enumerate(groups):
        rows = table[table[colour_by] == group]
        fig.add_trace(scatter(
            x=rows["x"], y=rows["y"], mode="markers", name=str(group), legendgroup=str(group),
            marker=dict(color=PALETTE[i % len(PALETTE)], size=6, opacity=0.75,
                        symbol=[ERROR_SYMBOL if not right else RIGHT_SYMBOL
                                for right in rows["correct"]]),
            customdata=rows[["position", "test image", "true class", "predicted class",
                             "confidence"]].to_numpy(dtype=object),
            hovertemplate=("test image #%{customdata[1]}<br>true %{customdata[2]}<br>"
                           "predicted %{customdata[3]} (%{customdata[4]:.0%})<extra></extra>")
            if hover_labels else None,
            hoverinfo=None if hover_labels else "none",  # "none": no label, events still fire
        ))
    for positions, name, size in (([chosen] if chosen is not None else [], "chosen image", 16),
                                  (list(neighbours), "its nearest neighbours", 11)):
        if not positions:
            continue
        rows = table.set_index("position").loc[list(positions)]
        fig.add_trace(scatter(  # the points' kind, so the rings share their layer, on top
            x=rows["x"], y=rows["y"], mode="markers", name=name, hoverinfo="skip",
            marker=dict(size=size, color="rgba(0,0,0,0)",
                        line=dict(color=HIGHLIGHT, width=2.5 if size > 12 else 1.5))))
    errors = int((~table["correct"]).sum())
    title = (f"Embedding map of run {run_id}: {len(table):,} test images, {errors:,} "
             f"misclassified (crosses)")
    base_layout(fig, title, height=height)
    fig.update_layout(xaxis=dict(showticklabels=False, title=how),
                      yaxis=dict(showticklabels=False, title=""),
                      legend=dict(itemsizing="constant"), clickmode="event+select",
                      dragmode="pan")
    if len(groups) > LEGEND_ON_TOP_MAX:  # 100 classes: a column beside the plot that scrolls
        fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left",
                                      x=1.01), margin=dict(t=60, r=10))
    return fig


def loading_figure(run_id: str = "", height: int = 640) -> go.Figure:
    """The map's empty frame, drawn while the page reads the map: the browser loads and starts
    plotly (about 1 s of script in a new tab) meanwhile instead of after the points arrive."""
    fig = base_layout(go.Figure(), f"Embedding map of run {run_id}: loading…", height=height)
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def selected_position(points: Sequence[dict] | None) -> int | None:
    """The row position of the first clicked map point in a plotly selection event, or None
    (the highlight rings carry no ``customdata`` and are never taken)."""
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(custom, dict):  # Streamlit in the browser: keyed "0", "1", ...
            custom = [custom.get(str(i), custom.get(i)) for i in range(len(custom))]
        if isinstance(custom, (list, tuple)) and custom:
            try:
                return int(custom[0])
            except (TypeError, ValueError):
                continue
    return None
