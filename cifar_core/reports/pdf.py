"""The stakeholder report as a PDF: the HTML report's content, printed by headless Chromium.

The figures are drawn first, as SVG, by kaleido (``cifar_core.reports.render``), and sit in
the page as vector drawings, so the PDF keeps their text as text and stays sharp at any zoom;
the page is then printed with ``--print-to-pdf``. A4 landscape: a 1000 px chart prints at
its own size. Content, numbers and run ids are those of the HTML report
(``cifar_core.reports.html.report_sections``), model cards included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from cifar_core.analysis.runs import RunKey
from cifar_core.errors import CifarCoreError
from cifar_core.reports.html import build_print_html
from cifar_core.reports.render import figure_images, find_browser, print_to_pdf
from cifar_core.runs.store import RunRecord

PRINT_FIGURE_WIDTH = 1000  # px: the width of an A4 landscape page's text (273 mm) at 96 dpi
_XML_PROLOG = re.compile(r"^\s*<\?xml[^>]*>\s*")


def _inline_svg(data: bytes) -> str:
    """A drawn figure as an ``<svg>`` element to place in the page (its own size comes
    from its viewBox; the print CSS makes it as wide as the text)."""
    return _XML_PROLOG.sub("", data.decode("utf-8"))


def build_pdf_report(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord], *,
                     title: str = "CIFAR-100 model progression", browser: str | None = None,
                     generated_at: datetime | None = None) -> bytes:
    """The report as PDF bytes; ``browser`` is the Chromium to use (default: see
    ``find_browser``). A ``RendererError`` saying what to install when there is none."""
    if not counting:
        raise CifarCoreError("no completed runs to report on: train a model first "
                             "(cifar-core train --model 1, or the Train page)")
    path = find_browser(browser)  # before any work: a missing browser is the likely failure
    figures = []

    def placeholder(figure) -> str:
        figures.append(figure)
        return f"<!--figure-{len(figures) - 1}-->"

    page = build_print_html(records, counting, title=title, figure=placeholder,
                            generated_at=generated_at)
    drawn = figure_images(figures, "svg", browser=path, width=PRINT_FIGURE_WIDTH)
    for index, svg in enumerate(drawn):
        page = page.replace(f"<!--figure-{index}-->",
                            f"<div class='figure'>{_inline_svg(svg)}</div>", 1)
    return print_to_pdf(page, browser=path)
