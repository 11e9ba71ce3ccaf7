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
    for trace in traces:
        if trace is not None:
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
                            line=dict(width=2, color=REFERENCE)),
                hovertemplate=f"{name}: %{{y:.1f}}% (model %{{x}}, published)<extra></extra>"))
    models = sorted(set(SPECS) | {p.model for p in points})
    fig.update_xaxes(title=None, tickmode="array", tickvals=models, tickangle=0,
                     ticktext=[_tick_label(m) for m in models], tickfont=dict(size=11),
                     range=[min(models) - 0.5, max(models) + 0.9])  # room for labels
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100], ticksuffix="%")
    return base_layout(fig, title, height=500)
