"""Model 5's flip augmentation applied several times to a few images, side by side."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cifar_core.analysis.images import AugmentationPreview
from cifar_core.charts.style import base_layout


def augmentation_figure(preview: AugmentationPreview, captions: list[str] | None = None
                        ) -> go.Figure:
    """A grid: one row per image, the original first, then each augmented copy."""
    rows, copies = preview.variants.shape[:2]
    if rows == 0:
        raise ValueError("no images to show")
    captions = captions or [f"image {i + 1}" for i in range(rows)]
    titles = []
    for i in range(rows):
        titles.append(f"{captions[i]}: original")
        titles += [f"copy {j + 1}: {preview.labels[i][j]}" for j in range(copies)]
    fig = make_subplots(rows=rows, cols=copies + 1, subplot_titles=titles,
                        horizontal_spacing=0.02, vertical_spacing=0.06 / max(rows, 1) + 0.02)
    for i in range(rows):
        fig.add_trace(go.Image(z=preview.originals[i], hoverinfo="skip"), row=i + 1, col=1)
        for j in range(copies):
            fig.add_trace(go.Image(z=preview.variants[i, j], hoverinfo="skip"),
                          row=i + 1, col=j + 2)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    return base_layout(fig, None, height=70 + 170 * rows)
