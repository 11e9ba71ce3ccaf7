"""Shared look of the dashboard's figures: colours, fonts, margins."""

from __future__ import annotations

import plotly.graph_objects as go

FINE = "#1f5aa6"  # fine-class results
SUPER = "#d9822b"  # superclass results
COARSE = "#7a4fb3"  # runs trained on superclasses
REFERENCE = "#6b6b6b"  # the report's published figures
GOOD = "#2e8b57"
BAD = "#c0392b"
NEUTRAL = "#9aa5b1"
HIGHLIGHT = "#e4572e"
SEQUENTIAL = "Blues"
FONT = "Inter, Segoe UI, Helvetica, Arial, sans-serif"


_GRID = "#ebf0f8"
_AXIS = dict(gridcolor=_GRID, linecolor=_GRID, zerolinecolor=_GRID, automargin=True, ticks="",
             title=dict(standoff=12))
# A small template in the spirit of "plotly_white": plotly copies and validates the template
# of every figure, and its built-in ones cost ~15 ms a figure, which a page with four
# figures feels on two cores.
TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", font=dict(family=FONT, size=13,
                                                           color="#2a3f5f"),
    xaxis=_AXIS, yaxis=_AXIS, colorway=[FINE, SUPER, COARSE, GOOD, BAD, NEUTRAL],
    hoverlabel=dict(font_size=12), hovermode="closest"))


def base_layout(fig: go.Figure, title: str | None = None, height: int | None = None
                ) -> go.Figure:
    """Apply the common layout: white background, compact margins, legend on top."""
    # The title sits at the very top of the figure and the legend right above the plot
    # area, with room for two legend rows between them.
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", y=0.99, yanchor="top", yref="container")
        if title else None,
        template=TEMPLATE,
        margin=dict(l=10, r=10, t=100 if title else 40, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    if height:
        fig.update_layout(height=height)
    return fig


def square_cells(fig: go.Figure) -> go.Figure:
    """Draw a heatmap's cells square: the plot area shrinks to a square within the figure
    (``constrain="domain"``) instead of stretching into a wide strip or a tall column, so a
    20x20 matrix stays readable however wide the page is."""
    fig.update_xaxes(constrain="domain")
    fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    return fig
