"""One image's prediction: the top-5 bar chart and the saliency overlay."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from cifar_core.analysis.names import readable, readable_all
from cifar_core.charts.style import FINE, NEUTRAL, base_layout

# Transparent where nothing mattered, so the image shows through; hot where it did.
OVERLAY_SCALE = [[0.0, "rgba(255, 255, 0, 0)"], [0.35, "rgba(255, 140, 0, 0.25)"],
                 [0.7, "rgba(230, 40, 20, 0.65)"], [1.0, "rgba(255, 255, 60, 0.95)"]]


def top_classes_figure(classes: Sequence[str], probabilities: Sequence[float],
                       title: str | None = "Top-5 classes") -> go.Figure:
    """Horizontal bars of the top classes (in words), best at the top, in percent."""
    if len(classes) != len(probabilities) or not classes:
        raise ValueError("need as many probabilities as classes, at least one")
    percent = [100.0 * float(p) for p in probabilities]
    colors = [FINE] + [NEUTRAL] * (len(classes) - 1)
    fig = go.Figure(go.Bar(
        y=readable_all(classes), x=percent, orientation="h", marker_color=colors,
        text=[f"{p:.1f}%" for p in percent], textposition="outside",
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(range=[0, 115], ticksuffix="%", title="probability")
    return base_layout(fig, title, height=140 + 40 * len(classes))


def saliency_figure(image: np.ndarray, heatmap: np.ndarray, method: str = "saliency",
                    label: str | None = None, opacity: float = 0.9) -> go.Figure:
    """The 32x32 input with the saliency heatmap laid over it (transparent where cold)."""
    image = np.asarray(image, dtype=np.uint8)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {image.shape[:2]}")
    names = {"gradcam": "Grad-CAM (HiResCAM)", "smoothgrad": "SmoothGrad"}
    title = names.get(method, method) + (f" for '{readable(label)}'" if label else "")
    fig = go.Figure([
        go.Image(z=image, hoverinfo="skip"),
        go.Heatmap(z=heatmap, colorscale=OVERLAY_SCALE, opacity=opacity, zmin=0, zmax=1,
                   colorbar=dict(title="influence", len=0.8),
                   hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>")])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return base_layout(fig, title, height=420)
