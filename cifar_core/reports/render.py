"""Drawing the stakeholder outputs with a headless Chromium: figures as images, pages as PDF.

One browser family serves both the PDF and the slides. Plotly figures are drawn by kaleido
(which drives Chromium through its DevTools pipe and waits until plotly.js has drawn each
figure) as SVG for the PDF and as PNG for the slides; the PDF itself is a static HTML page,
charts inline, printed by ``chromium --headless --print-to-pdf``. The printed page holds no
script, so the print never races plotly.js (the interactive HTML report draws its charts
client-side). BENCHMARKS.md, "Stakeholder reports", has the measurements behind the choice.

The browser: ``--browser PATH`` (the caller's ``explicit``), else ``CIFAR_CORE_CHROMIUM``,
else ``chromium``, ``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on
PATH. Every failure is a ``RendererError`` of one line saying what to install or set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cifar_core import settings
from cifar_core.errors import RendererError

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install it (Debian/Ubuntu: apt-get install chromium) or name one with "
                f"--browser PATH or {settings.ENV_CHROMIUM}=PATH")
# Flags for a headless Chromium that starts nothing it does not need and reaches no network;
# --no-sandbox: Chromium refuses to start as root otherwise (containers, CI).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--no-default-browser-check",
                  "--hide-scrollbars", "--mute-audio")
PRINT_TIMEOUT_SECONDS = 120.0
FIGURE_TIMEOUT_SECONDS = 60.0  # one figure; kaleido's own default is 90
PNG_SCALE = 2  # slide pictures at twice their CSS size: sharp on a projector


def find_browser(explicit: str | os.PathLike | None = None) -> str:
    """The Chromium executable to draw with: ``explicit``, else ``CIFAR_CORE_CHROMIUM``, else
    the first of ``BROWSER_NAMES`` on PATH; a ``RendererError`` saying what to install if
    there is none (or the named one is not an executable file)."""
    named = settings.browser_path(explicit)
    if named:
        path = Path(named).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            where = "--browser" if explicit else settings.ENV_CHROMIUM
            raise RendererError(f"no browser at {named} (from {where}): install Chromium "
                                "(Debian/Ubuntu: apt-get install chromium) or point "
                                f"{where} at its executable")
        return str(path)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RendererError(f"PDF and slides need Chromium, and none was found on PATH "
                        f"({', '.join(BROWSER_NAMES)}): {INSTALL_HINT}")


def _run_coroutine(coroutine):
    """Run ``coroutine`` to its end from synchronous code, also where an event loop is
    already running in this thread (a notebook): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def drawing_width(figure, width: int) -> int:
    """The width to draw ``figure`` at: ``width``, or for a heatmap of square cells
    (``square_cells``) its own height, so its colour bar sits beside the matrix instead of
    a page's width away."""
    if figure.layout.yaxis.scaleanchor == "x":
        return min(width, int(figure.layout.height or width))
    return width


def figure_images(figures: Sequence, image_format: str, *, browser: str | None = None,
                  width: int = 1000) -> list[bytes]:
    """Each plotly figure drawn as ``"png"`` or ``"svg"`` bytes, in one browser session.

    ``width`` is the figures' CSS width in pixels (``drawing_width``); the height is each
    figure's own (``layout.height``, else 500). PNGs are drawn at ``PNG_SCALE`` times that.
    """
    if image_format not in ("png", "svg"):
        raise ValueError(f"image_format must be png or svg, got {image_format!r}")
    if not figures:
        return []
    path = find_browser(browser)
    try:
        import kaleido
    except ImportError:
        raise RendererError("drawing charts for PDF and slides needs the kaleido package: "
                            "pip install kaleido") from None

    async def draw() -> list[bytes]:
        # mathjax=False: kaleido would load MathJax from a CDN, which an offline machine
        # waits for in vain; no figure here uses LaTeX. plotly.js is plotly's own copy.
        async with kaleido.Kaleido(n=1, timeout=FIGURE_TIMEOUT_SECONDS, path=path,
                                   mathjax=False) as renderer:
            images = []
            for figure in figures:
                height = int(figure.layout.height or 500)
                images.append(await renderer.calc_fig(figure, opts={
                    "format": image_format, "width": drawing_width(figure, width),
                    "height": height,
                    "scale": PNG_SCALE if image_format == "png" else 1}))
            return images

    try:
        images = _run_coroutine(draw())
    except RendererError:
        raise
    except Exception as exc:  # kaleido's and choreographer's errors have no common base
        detail = " ".join(str(exc).split())[:300]
        raise RendererError(f"drawing the charts with {path} failed "
                            f"({type(exc).__name__}: {detail}); check that it starts: "
                            f"{path} --headless --no-sandbox --version") from None
    if any(not image for image in images):
        raise RendererError(f"drawing the charts with {path} gave an empty image")
    return images


def print_to_pdf(html: str, *, browser: str | None = None,
                 timeout: float = PRINT_TIMEOUT_SECONDS) -> bytes:
    """``html`` (a complete, self-contained page) printed to PDF by headless Chromium.

    The page is written to a fresh temporary folder, which also holds the browser's user
    data: no profile, cache or lock of another Chromium is touched, and nothing is left.
    Page size and margins come from the page's own ``@page`` rule.
    """
    path = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="cifar-pdf-") as folder:
        page, output = Path(folder) / "report.html", Path(folder) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        command = [path, *CHROMIUM_FLAGS, f"--user-data-dir={Path(folder) / 'profile'}",
                   "--no-pdf-header-footer", f"--print-to-pdf={output}", page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise RendererError(f"{path} did not print the PDF within {timeout:.0f} s") from None
        except OSError as exc:
            raise RendererError(f"{path} could not be started ({exc.strerror or exc}): "
                                f"{INSTALL_HINT}") from None
        data = output.read_bytes() if output.is_file() else b""
        if done.returncode != 0 or not data.startswith(b"%PDF"):
            lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
            last = lines[-1].strip()[:300] if lines else "no output"
            raise RendererError(f"{path} printed no PDF (exit {done.returncode}: {last})")
        return data
