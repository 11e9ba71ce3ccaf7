"""Per-class figures: weakest/strongest classes, run-to-run differences, confused pairs."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from cifar_core.analysis.classes import ClassExtremes, metric_name
from cifar_core.analysis.names import readable, readable_all
from cifar_core.charts.style import BAD, FINE, GOOD, NEUTRAL, base_layout


def _bar_height(rows: int) -> int:
    return max(260, 26 * rows + 110)


def _padded_range(values, share: float = 0.18) -> list[float]:
    """An axis range over ``values`` and 0 with room on each side for the value labels
    written outside the bars (plotly's own range leaves them cut at the edge)."""
    values = [float(v) for v in values]
    low, high = min([0.0, *values]), max([0.0, *values])
    if low == high:  # nothing to draw: a plain 0..1 axis
        return [0.0, 1.0]
    pad = share * (high - low)
    return [low - pad if low < 0 else 0.0, high + pad if high > 0 else 0.0]


def extremes_figure(extremes: ClassExtremes, run_id: str | None = None) -> go.Figure:
    """The weakest and strongest classes by their metric, as horizontal bars in percent.

    Class names are shown in words. When every class ties, the figure has no bars and says
    so in its middle (the caption beside it should carry ``extremes.message`` too).
    """
    metric = extremes.metric
    fig = go.Figure()
    for frame, name, color in ((extremes.strongest, "strongest", GOOD),
                               (extremes.weakest, "weakest", BAD)):
        if frame.empty:
            continue
        frame = frame.sort_values(metric)
        fig.add_trace(go.Bar(
            y=readable_all(frame["class"]), x=100 * frame[metric], orientation="h", name=name,
            marker_color=color, text=[f"{100 * v:.0f}%" for v in frame[metric]],
            textposition="outside", cliponaxis=False,
            customdata=[[readable(s) if isinstance(s, str) else "no superclass", n]
                        for s, n in zip(frame["superclass"], frame["support"], strict=True)],
            hovertemplate="%{y} (%{customdata[0]})<br>" + metric_name(metric)
                          + " %{x:.1f}%<br>test images %{customdata[1]}<extra></extra>"))
    if extremes.weakest.empty and extremes.strongest.empty:
        fig.add_annotation(text=extremes.message or "No classes to rank", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(size=14, color=NEUTRAL))
        fig.update_yaxes(visible=False)
    fig.update_xaxes(title=f"{metric_name(metric)} (%)", range=[0, 110], ticksuffix="%",
                     tickvals=[0, 20, 40, 60, 80, 100])
    fig.update_yaxes(title=None, categoryorder="array",  # bottom to top
                     categoryarray=readable_all(extremes.weakest.sort_values(metric)["class"])
                     + readable_all(extremes.strongest.sort_values(metric)["class"]))
    title = f"Weakest and strongest classes by {metric_name(metric)}"
    rows = len(extremes.weakest) + len(extremes.strongest)
    return base_layout(fig, title + (f" · run {run_id}" if run_id else ""),
                       height=_bar_height(rows))


def class_difference_figure(diff: pd.DataFrame, run_a: str, run_b: str, metric: str = "f1",
                            count: int = 10) -> go.Figure:
    """The ``count`` biggest gains and losses of ``metric`` from run A to run B."""
    gains = diff[diff["difference"] > 0].head(count)
    losses = diff[diff["difference"] < 0].tail(count)
    shown = pd.concat([gains, losses]).sort_values("difference")
    colors = [GOOD if v > 0 else BAD for v in shown["difference"]]
    fig = go.Figure(go.Bar(
        y=readable_all(shown["class"]), x=100 * shown["difference"], orientation="h",
        marker_color=colors,
        text=[f"{100 * v:+.1f}" for v in shown["difference"]], textposition="outside",
        customdata=shown[["run A", "run B"]].to_numpy() * 100,
        hovertemplate="%{y}<br>run A %{customdata[0]:.1f}% -> run B %{customdata[1]:.1f}%"
                      "<br>change %{x:+.1f} points<extra></extra>"))
    unchanged = int((diff["difference"] == 0).sum())
    fig.update_xaxes(title=f"change in {metric_name(metric)} (percentage points), B - A",
                     zeroline=True, zerolinecolor=NEUTRAL,
                     range=_padded_range(100 * shown["difference"]))
    fig.update_yaxes(title=None)
    title = f"Per-class {metric_name(metric)}: run B {run_b} vs run A {run_a}"
    if unchanged:
        title += f" ({unchanged} classes unchanged)"
    return base_layout(fig, title, height=_bar_height(len(shown)))


def confused_pairs_figure(pairs: pd.DataFrame, run_id: str | None = None) -> go.Figure:
    """The most frequent (true -> predicted) confusions as horizontal bars."""
    shown = pairs.iloc[::-1]
    labels = [f"{readable(t)} → {readable(p)}"
              for t, p in zip(shown["true class"], shown["predicted as"], strict=True)]
    fig = go.Figure(go.Bar(
        y=labels, x=shown["count"], orientation="h", marker_color=FINE,
        text=[f"{c} ({s:.0f}%)" for c, s in zip(shown["count"], shown["share of true class %"],
                                                strict=True)],
        textposition="outside",
        hovertemplate="%{y}: %{x} test images<extra></extra>"))
    counts = list(shown["count"])
    fig.update_xaxes(title="test images (share of the true class)",
                     range=_padded_range(counts, 0.35),  # "12 (40%)" is a long label
                     dtick=max(1, math.ceil(max(counts, default=1) / 8)))  # whole images
    fig.update_yaxes(title=None)
    return base_layout(fig, "Most confused class pairs" + (f" · run {run_id}" if run_id else ""),
                       height=_bar_height(len(shown)))
