"""Per-class figures: weakest/strongest classes, run-to-run differences, confused pairs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cifar_core.charts.style import BAD, FINE, GOOD, NEUTRAL, base_layout


def _bar_height(rows: int) -> int:
    return max(260, 26 * rows + 110)


def extremes_figure(weakest: pd.DataFrame, strongest: pd.DataFrame, metric: str = "f1",
                    run_id: str | None = None) -> go.Figure:
    """The weakest and strongest classes by ``metric``, as horizontal bars in percent."""
    fig = go.Figure()
    for frame, name, color in ((strongest, "strongest", GOOD), (weakest, "weakest", BAD)):
        frame = frame.sort_values(metric)
        fig.add_trace(go.Bar(
            y=frame["class"], x=100 * frame[metric], orientation="h", name=name,
            marker_color=color, text=[f"{100 * v:.0f}%" for v in frame[metric]],
            textposition="outside", customdata=frame[["superclass", "support"]].to_numpy(),
            hovertemplate="%{y} (%{customdata[0]})<br>" + metric
                          + " %{x:.1f}%<br>test images %{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title=f"{metric} (%)", range=[0, 110], ticksuffix="%")
    fig.update_yaxes(title=None, categoryorder="array",
                     categoryarray=list(weakest.sort_values(metric)["class"])
                     + list(strongest.sort_values(metric)["class"]))  # bottom to top
    title = f"Weakest and strongest classes by {metric}"
    return base_layout(fig, title + (f" · run {run_id}" if run_id else ""),
                       height=_bar_height(len(weakest) + len(strongest)))


def class_difference_figure(diff: pd.DataFrame, run_a: str, run_b: str, metric: str = "f1",
                            count: int = 10) -> go.Figure:
    """The ``count`` biggest gains and losses of ``metric`` from run A to run B."""
    gains = diff[diff["difference"] > 0].head(count)
    losses = diff[diff["difference"] < 0].tail(count)
    shown = pd.concat([gains, losses]).sort_values("difference")
    colors = [GOOD if v > 0 else BAD for v in shown["difference"]]
    fig = go.Figure(go.Bar(
        y=shown["class"], x=100 * shown["difference"], orientation="h", marker_color=colors,
        text=[f"{100 * v:+.1f}" for v in shown["difference"]], textposition="outside",
        customdata=shown[["run A", "run B"]].to_numpy() * 100,
        hovertemplate="%{y}<br>run A %{customdata[0]:.1f}% -> run B %{customdata[1]:.1f}%"
                      "<br>change %{x:+.1f} points<extra></extra>"))
    unchanged = int((diff["difference"] == 0).sum())
    fig.update_xaxes(title=f"change in {metric} (percentage points), B - A", zeroline=True,
                     zerolinecolor=NEUTRAL)
    fig.update_yaxes(title=None)
    title = f"Per-class {metric}: run B {run_b} vs run A {run_a}"
    if unchanged:
        title += f" ({unchanged} classes unchanged)"
    return base_layout(fig, title, height=_bar_height(len(shown)))


def confused_pairs_figure(pairs: pd.DataFrame, run_id: str | None = None) -> go.Figure:
    """The most frequent (true -> predicted) confusions as horizontal bars."""
    shown = pairs.iloc[::-1]
    labels = [f"{t} → {p}" for t, p in zip(shown["true class"], shown["predicted as"],
                                             strict=True)]
    fig = go.Figure(go.Bar(
        y=labels, x=shown["count"], orientation="h", marker_color=FINE,
        text=[f"{c} ({s:.0f}%)" for c, s in zip(shown["count"], shown["share of true class %"],
                                                strict=True)],
        textposition="outside",
        hovertemplate="%{y}: %{x} test images<extra></extra>"))
    fig.update_xaxes(title="test images (share of the true class)")
    fig.update_yaxes(title=None)
    return base_layout(fig, "Most confused class pairs" + (f" · run {run_id}" if run_id else ""),
                       height=_bar_height(len(shown)))
