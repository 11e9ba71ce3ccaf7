"""Hover thumbnails for the embedding map: the hovered point's test image beside the cursor.

Plotly's hover label can hold text only, and ``st.plotly_chart`` reports clicks and
selections to Python but no hover. So the thumbnail is drawn in the browser: ``HOVER_JS`` is
the script of a small ``st.components.v2`` component that the page mounts right after the map.
It finds the map's plotly graph (the nearest chart above the component), listens to its
``plotly_hover`` / ``plotly_unhover`` events and draws the hovered point's image, scaled up
with sharp pixels, from one sprite sheet: a JPEG grid of the map's images sent once with the
component's data (Streamlit sends an unchanged element again as a reference to the copy the
browser keeps, so reruns of the page do not resend it).

``hover_sprite`` builds that sheet and the mapping the script relies on: cell ``i`` holds the
image of the map table's row ``i``, whose ``position`` is the ``customdata[0]`` that
``charts.embedding.embedding_figure`` gives its point. The card under the image repeats the
words of plotly's label (image number, true and predicted class), so the page draws the
figure with ``hover_labels=False`` when it mounts the component, rather than two labels side
by side. No Streamlit here: the page mounts it.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cifar_core.analysis.embedding import sprite
from cifar_core.errors import DataError

CELL = 32  # px of one image in the sheet: the images' own size, so nothing is lost
SCALE = 3  # the thumbnail shows each pixel as a 3x3 block: 96 px
# JPEG, not PNG: a few MB for 10,000 images instead of about 18 (BENCHMARKS.md, "Embedding
# map"). Colour is kept for every pixel (4:4:4, no chroma subsampling): each pixel is seen as
# a 3x3 block, and subsampled colour would smear over 2x2 of them. Cells are 32 px, a multiple
# of JPEG's 8 px blocks, so no block straddles two images and none bleeds into its neighbour.
QUALITY, SUBSAMPLING = 75, 0


@dataclass(frozen=True)
class HoverSprite:
    """One JPEG sheet of the map's images: ``positions[i]`` (a map-table row position) is in
    cell ``i``, counted row by row in a grid ``columns`` cells wide, each ``cell`` px square."""

    jpeg: bytes
    cell: int
    columns: int
    positions: tuple[int, ...]

    def box(self, position: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in the sheet's pixels of the image at ``position``."""
        try:
            index = self.positions.index(position)
        except ValueError:
            raise DataError(f"map point {position} is not in the hover sprite") from None
        row, column = divmod(index, self.columns)
        return (column * self.cell, row * self.cell, (column + 1) * self.cell,
                (row + 1) * self.cell)

    @property
    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")

    def component_data(self, scale: int = SCALE) -> dict:
        """What ``HOVER_JS`` reads (JSON): the sheet as a data URI, its grid, the position
        each cell holds, and how much to enlarge a cell."""
        return {"sprite": self.data_uri, "cell": self.cell, "columns": self.columns,
                "positions": list(self.positions), "scale": int(scale)}


def hover_sprite(table: pd.DataFrame, images: np.ndarray, *, cell: int = CELL,
                 quality: int = QUALITY, subsampling: int = SUBSAMPLING) -> HoverSprite:
    """The sheet for the points of ``table`` (``analysis.embedding.map_table`` or some of its
    rows), one cell a row in the table's order: row ``i`` shows ``images[table["test image"]
    [i]]``, the test image its point stands for. ``images`` are the run's test images."""
    if table.empty:
        raise DataError("no map points to build a hover sprite for")
    indices = np.asarray(table["test image"], dtype=int)
    outside = indices[(indices < 0) | (indices >= len(images))]
    if len(outside):
        raise DataError(f"test image {int(outside[0])} is out of range: the data set has "
                        f"{len(images)} test images")
    sheet = sprite(np.asarray(images)[indices], size=cell)
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return HoverSprite(jpeg=buffer.getvalue(), cell=cell,
                       columns=math.ceil(math.sqrt(len(indices))),
                       positions=tuple(int(p) for p in table["position"]))


# The component's script, an ES module (st.components.v2 imports it and calls its default
# export with the component's data and its root; it runs with the page's DOM, not sandboxed).
# Streamlit calls it again when the data changes, without the previous call's cleanup, so each
# call first tears down the instance it finds on the same root.
HOVER_JS = r"""
const instances = new WeakMap();  // component root -> teardown of the instance living there

export default function ({ data, parentElement }) {
  instances.get(parentElement)?.();
  const host = parentElement.host || parentElement;  // the shadow root's element
  const size = data.cell * data.scale;
  const cellOf = new Map(data.positions.map((position, cell) => [position, cell]));
  const sheet = new Image();
  sheet.src = data.sprite;

  // On <body>, fixed: nothing of Streamlit's layout clips it or moves it when the page scrolls.
  const card = document.createElement('div');
  card.setAttribute('data-testid', 'embeddingHoverThumbnail');
  Object.assign(card.style, {
    position: 'fixed', zIndex: '1000', display: 'none', pointerEvents: 'none',
    boxSizing: 'content-box', width: `${size}px`, padding: '4px', borderRadius: '4px',
    boxShadow: '0 2px 8px rgba(0, 0, 0, 0.25)', overflowWrap: 'anywhere',
  });
  // The app's theme, read when the card is shown: the component's element carries it as CSS
  // variables, which a card on <body> does not inherit (and the theme can change meanwhile).
  const paint = () => {
    const theme = getComputedStyle(host);
    const colour = (name, fallback) => theme.getPropertyValue(name).trim() || fallback;
    Object.assign(card.style, {
      background: colour('--st-background-color', '#fff'),
      color: colour('--st-text-color', '#31333f'),
      border: `1px solid ${colour('--st-border-color', '#d5dae5')}`,
      font: `11px/1.3 ${colour('--st-font', 'sans-serif')}`,
    });
  };
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  Object.assign(canvas.style, {display: 'block', width: `${size}px`, height: `${size}px`,
                               imageRendering: 'pixelated'});
  const caption = document.createElement('div');
  Object.assign(caption.style, {marginTop: '3px', whiteSpace: 'pre-line'});
  card.append(canvas, caption);
  document.body.append(card);
  const context = canvas.getContext('2d');

  let shown = null;  // the position whose image the card shows
  const draw = () => {
    if (shown === null || !sheet.naturalWidth) return;  // drawn on load otherwise
    const cell = cellOf.get(shown);
    const column = cell % data.columns, row = Math.floor(cell / data.columns);
    context.imageSmoothingEnabled = false;  // each image pixel a sharp block
    context.clearRect(0, 0, size, size);
    context.drawImage(sheet, column * data.cell, row * data.cell, data.cell, data.cell,
                      0, 0, size, size);
  };
  sheet.addEventListener('load', draw);

  const hide = () => {
    shown = null;
    card.style.display = 'none';
    card.removeAttribute('data-position');
  };

  // Beside the point (the cursor is on it or within plotly's 20 px hover distance): above
  // and to its right, clear of the cursor's arrow, which hangs down and to the right of the
  // spot it points at; flipped below or to the left where the window ends.
  const place = (point, mouse, gd) => {
    let x = mouse?.clientX, y = mouse?.clientY;
    try {
      const box = gd.getBoundingClientRect();
      const px = box.left + point.xaxis._offset + point.xaxis.l2p(point.x);
      const py = box.top + point.yaxis._offset + point.yaxis.l2p(point.y);
      if (Number.isFinite(px) && Number.isFinite(py)) { x = px; y = py; }
    } catch (error) { /* the cursor then */ }
    if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
    const width = card.offsetWidth, height = card.offsetHeight, margin = 4;
    const gapX = 12, gapY = 12;
    let left = x + gapX;
    if (left + width > window.innerWidth - margin) left = x - gapX - width;
    let top = y - gapY - height;
    if (top < margin) top = y + gapY;
    card.style.left = `${Math.max(margin, left)}px`;
    card.style.top = `${Math.max(margin, Math.min(top, window.innerHeight - height - margin))}px`;
    return true;
  };

  let gd = null;
  const onHover = (event) => {
    const point = (event?.points || []).find(p => Array.isArray(p.customdata));
    const position = point ? Number(point.customdata[0]) : NaN;
    if (!cellOf.has(position)) { hide(); return; }
    const [, image, truth, predicted, confidence] = point.customdata;
    shown = position;
    card.setAttribute('data-position', String(position));
    // The words of plotly's own label, which the page leaves out while this card shows them.
    caption.textContent = `test image #${image}\ntrue ${truth}\npredicted ${predicted}` +
      (Number.isFinite(Number(confidence)) ? ` (${Math.round(100 * confidence)}%)` : '');
    draw();
    paint();
    card.style.visibility = 'hidden';  // measured in place before it is seen
    card.style.display = 'block';
    if (place(point, event.event, gd)) card.style.visibility = 'visible'; else hide();
  };

  // The map's graph: in the nearest element above this component that holds a plotly chart.
  const findGraph = () => {
    let element = host.closest('[data-testid="stElementContainer"]')?.previousElementSibling;
    for (; element; element = element.previousElementSibling) {
      const found = element.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
      if (found) return found;
    }
    return null;
  };
  // A rerun can replace the chart (a new graph div) or re-plot it (plotly's purge replaces
  // the div's event methods, dropping the listeners): either is seen as a new `on`.
  const hooked = new WeakMap();  // graph div -> the `on` it was hooked through
  const unhook = (graph) => {
    graph.removeListener?.('plotly_hover', onHover);
    graph.removeListener?.('plotly_unhover', hide);
    graph.removeListener?.('plotly_relayout', hide);
    graph.removeEventListener('mouseleave', hide);
    hooked.delete(graph);
  };
  const hook = () => {
    const found = findGraph();
    if (gd && gd !== found) { unhook(gd); hide(); }
    gd = found;
    if (!gd || typeof gd.on !== 'function' || hooked.get(gd) === gd.on) return;
    gd.on('plotly_hover', onHover);
    gd.on('plotly_unhover', hide);
    gd.on('plotly_relayout', hide);  // a pan or zoom moves the point away
    gd.addEventListener('mouseleave', hide);
    hooked.set(gd, gd.on);
    // The cursor may rest on a point already (the page reran under it): plotly sends no new
    // hover for it until the cursor reaches another point, so show the one it holds.
    if (gd._hoverdata?.length) onHover({points: gd._hoverdata});
  };
  let pending = 0;
  const observer = new MutationObserver(() => {
    if (!pending) pending = requestAnimationFrame(() => { pending = 0; hook(); });
  });
  observer.observe(document.querySelector('[data-testid="stMain"]') || document.body,
                   {childList: true, subtree: true});
  window.addEventListener('scroll', hide, true);  // the card would stay where the point was
  hook();

  const teardown = () => {
    observer.disconnect();
    cancelAnimationFrame(pending);
    if (gd) unhook(gd);
    window.removeEventListener('scroll', hide, true);
    card.remove();
    instances.delete(parentElement);
  };
  instances.set(parentElement, teardown);
  return teardown;
}
"""
