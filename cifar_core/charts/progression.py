"""The accuracy progression, models 1 to 7 (and later), with the report's reference markers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from cifar_core.analysis.runs import ProgressionPoint, model_title
from cifar_core.charts.style import COARSE, FINE, REFERENCE, SUPER, base_layout
from cifar_core.models.specs import REPORT_RESULTS, SPECS

REPORT_FINE_NAME = "Report (CIFAR-100): fine top-1"
REPORT_SUPER_NAME = "Report (CIFAR-100): superclass top-1"


def _tick_label(model: int, width: int = 18) -> str:
    """``"<b>6</b><br>+ MobileNet<br>transfer learning"``: short lines so ticks never collide."""
    if model not in SPECS:
        return f"<b>Model {model}</b>"
    lines, line = [], ""
    for word in SPECS[model].title.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([f"<b>Model {model}</b>", *lines, line])


LABEL_ROOM = 8.0  # percentage points kept above the highest labelled value for its label
LABEL_GAP = 7.0  # a marker less than this above a labelled point puts its label below it


def _label_positions(xs: Sequence[float], ys: Sequence[float],
                     obstacles: Sequence[tuple[float, float]]) -> list[str]:
    """Where each value label goes: above its marker, unless another marker sits just above
    (the superclass line over the fine line, a report marker); then below, unless a marker
    sits just below too (the y axis reaches below 0% for a label under a marker near 0%:
    beside the marker, the line through it would cross the label); else to the left
    (report labels sit to the right of their markers)."""
    positions = []
    for x, y in zip(xs, ys, strict=True):
        near = [oy - y for ox, oy in obstacles if ox == x and (ox, oy) != (x, y)]
        if not any(0 <= d < LABEL_GAP for d in near):
            positions.append("top center")
        elif not any(-LABEL_GAP < d <= 0 for d in near):
            positions.append("bottom center")
        else:
            positions.append("middle left")
    return positions


def _trace(points: Sequence[ProgressionPoint], value, name: str, color: str, *,
           dash: str | None = None, symbol: str = "circle", mode: str = "lines+markers"
           ) -> go.Scatter | None:
    chosen = [p for p in points if value(p) is not None]
    if not chosen:
        return None
    return go.Scatter(
        x=[p.model for p in chosen], y=[100 * value(p) for p in chosen], name=name, mode=mode,
        line=dict(color=color, width=3, dash=dash), marker=dict(size=10, symbol=symbol,
                                                                color=color),
        cliponaxis=False,  # a marker at 0% or 100% is drawn whole, not cut by the axis
        text=[f"{100 * value(p):.1f}%" for p in chosen], textposition="top center",
        customdata=[[p.run_id, model_title(p.model), p.profile or "-"] for p in chosen],
        hovertemplate="%{customdata[1]}<br>" + name + ": %{y:.1f}%<br>run %{customdata[0]}"
                      "<br>profile %{customdata[2]}<extra></extra>")


def progression_figure(points: Sequence[ProgressionPoint],
                       reference: Mapping[int, Mapping[str, float]] | None = None,
                       title: str | None = "Test accuracy by model") -> go.Figure:
    """Our counted runs as lines, the report's published figures as labelled markers.

    Fine top-1 comes from fine-label runs, with their predictions mapped to superclasses as
    a second line; runs trained on the 20 superclasses appear as separate markers. The
    reference markers are the report's CIFAR-100 results (``REPORT_RESULTS``), never ours.
    The y axis reaches above 100% where a value label needs the room, and each label moves
    below its marker when another marker sits just above it.
    """
    reference = REPORT_RESULTS if reference is None else reference
    fine = [p for p in points if p.labels == "fine"]
    coarse = [p for p in points if p.labels == "coarse"]
    fig = go.Figure()
    traces = [
        _trace(fine, lambda p: p.top1, "Fine top-1", FINE, mode="lines+markers+text"),
        _trace(fine, lambda p: p.superclass, "Superclass accuracy (fine runs)", SUPER,
               dash="dot"),
        _trace(coarse, lambda p: p.top1, "Superclass top-1 (trained on superclasses)", COARSE,
               symbol="diamond", mode="markers+text"),
    ]
    ours = [trace for trace in traces if trace is not None]
    for trace in ours:
        fig.add_trace(trace)
    for key, name, symbol in (("fine", REPORT_FINE_NAME, "x-thin-open"),
                              ("superclass", REPORT_SUPER_NAME, "star-open")):
        marks = sorted((m, v[key]) for m, v in reference.items() if key in v)
        if marks:
            fig.add_trace(go.Scatter(
                x=[m for m, _ in marks], y=[v for _, v in marks], name=name,
                mode="markers+text", text=[f"report {v:.1f}%" for _, v in marks],
                textposition="middle right", textfont=dict(color=REFERENCE, size=11),
                marker=dict(symbol=symbol, size=14, color=REFERENCE,
                            line=dict(width=2, color=REFERENCE)), cliponaxis=False,
                hovertemplate=f"{name}: %{{y:.1f}}% (model %{{x}}, published)<extra></extra>"))
    markers = [(x, y) for trace in fig.data for x, y in zip(trace.x, trace.y, strict=True)]
    labelled = [trace for trace in fig.data[:len(ours)] if "text" in trace.mode]
    for trace in labelled:
        trace.textposition = _label_positions(trace.x, trace.y, markers)
    label_values = [y for trace in labelled for y in trace.y]
    highest = max((y for _, y in markers), default=0.0)
    top = max(100.0, max(label_values, default=0.0) + LABEL_ROOM, highest + LABEL_ROOM / 2)
    # below 0% only as far as a label under or beside a marker near 0% needs (no tick there)
    room_below = {"bottom center": LABEL_ROOM, "middle left": LABEL_ROOM / 2}
    bottom = min([0.0] + [y - room_below[where] for trace in labelled
                          for y, where in zip(trace.y, trace.textposition, strict=True)
                          if where in room_below])
    models = sorted(set(SPECS) | {p.model for p in points})
    fig.update_xaxes(title=None, tickmode="array", tickvals=models, tickangle=0,
                     ticktext=[_tick_label(m) for m in models], tickfont=dict(size=11),
                     range=[min(models) - 0.7, max(models) + 0.9])  # room for labels
    fig.update_yaxes(title="test accuracy (%)", range=[bottom, top], ticksuffix="%",
                     tickvals=[0, 20, 40, 60, 80, 100])  # no tick above 100%
    return base_layout(fig, title, height=500)
