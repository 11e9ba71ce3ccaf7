"""End to end in a real browser: ``streamlit run app.py`` driven by headless Chromium.

The tests use every page as a person would, against the fixture runs: every page at 1400 and
1920 px wide (a screenshot of each, no exception, no chart's value labels outside its plot
area, the stakeholder heatmap large and square), a click on a confusion cell that must show
exactly that pair's images, a run switch that must reset the pair, an upload on Classify, a
job stopped from its card, and the quick progression queued by a double click (once).

Screenshots go to a folder the tests print (``CIFAR_CORE_SCREENSHOTS`` chooses it; default:
pytest's temporary folder): look at them. Needs Debian's ``chromium`` and Python's
``playwright``; skipped with the reason where either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hostile_files import valid_images
from processes import stop_process

from cifar_core.jobs import list_jobs, stop_job, submit_job
from cifar_core.runs.store import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CIFAR_CORE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PRESENT_TITLE = re.compile("from a one-layer CNN to transfer learning")
PAGES = [  # (url path, title on the page)
    ("", "Overview"), ("present", PRESENT_TITLE), ("train", "Train"), ("tuning", "Tuning"),
    ("classes", "Classes"), ("confusion", "Confusion"), ("errors", "Errors"),
    ("compare", "Compare"), ("embedding", "Embedding map"), ("augmentation", "Augmentation"),
    ("classify", "Classify")]
CHART_PAGES = {"", "present", "tuning", "classes", "confusion", "errors", "compare",
               "embedding", "augmentation"}
WIDTHS = (1400, 1920)
TOUR_HEIGHT = 3600  # px: tall enough for the longest page
START_TIMEOUT = 120
RENDER_TIMEOUT_MS = 120_000
LABEL_SLACK_PX = 2  # anti-aliasing: a label may touch its plot area's edge
SETTLE_QUIET_MS = 250  # a page is drawn once its DOM has not changed for this long

# Resolves once every plotly chart on the page has drawn its SVG and the main block has not
# changed for `quiet` ms (at most 10 s: a page that keeps moving, such as a job's progress,
# is then taken as it is).
SETTLED_JS = """
quiet => new Promise(resolve => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const drawn = () => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .every(chart => chart.querySelector('.main-svg'));
  let timer = null;
  const done = () => { observer.disconnect(); clearTimeout(limit); resolve(); };
  const restart = () => { clearTimeout(timer);
                          timer = setTimeout(() => drawn() ? done() : restart(), quiet); };
  const observer = new MutationObserver(restart);
  observer.observe(main, {subtree: true, childList: true, attributes: true,
                          characterData: true});
  const limit = setTimeout(done, 10000);
  restart();
})
"""

# For every drawn plotly chart: its title, its plot areas (one rectangle a subplot), and
# every value label plotly drew for a trace (bar and scatter text, heatmap cell text),
# each as a client rectangle.
CHART_GEOMETRY_JS = """
() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].map(chart => {
  const rect = el => { const r = el.getBoundingClientRect();
                       return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
  const title = chart.querySelector('.gtitle');
  return {
    title: title ? title.textContent : '',
    areas: [...chart.querySelectorAll('.nsewdrag')].map(rect),
    labels: [...chart.querySelectorAll('.textpoint text, .hm text')]
      .filter(t => t.textContent.trim() && t.getBBox().width > 0)
      .map(t => ({text: t.textContent, ...rect(t)})),
  };
})
"""

# The confusion heatmap as plotly holds it, and the client position of one cell's centre.
HEATMAP_JS = """
() => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const heat = gd._fullData[0];  // decoded: gd.data may hold typed-array JSON
  return {x: Array.from(heat.x), y: Array.from(heat.y),
          z: Array.from(heat.z, row => Array.from(row, Number)), type: heat.type};
}
"""
CELL_CENTRE_JS = """
([row, column]) => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const layout = gd._fullLayout, box = gd.getBoundingClientRect();
  return {x: box.left + layout._size.l + layout.xaxis.l2p(column),
          y: box.top + layout._size.t + layout.yaxis.l2p(row)};
}
"""


# A titled chart's cell centre, for pages with several charts: the chart whose title holds
# ``prefix`` (plotly wraps it in <b>), its row and column (category indices of its axes).
TITLED_CELL_CENTRE_JS = """
([prefix, row, column]) => {
  const gd = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
    .find(g => g._fullLayout && (g._fullLayout.title.text || '').includes(prefix));
  const layout = gd._fullLayout, box = gd.getBoundingClientRect();
  const heat = gd._fullData[0];
  return {x: box.left + layout._size.l + layout.xaxis.l2p(column),
          y: box.top + layout._size.t + layout.yaxis.l2p(row),
          rows: Array.from(heat.y), columns: Array.from(heat.x)};
}
"""

def _requirements():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install "
                    "chromium) or set CIFAR_CORE_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_streamlit(cwd: Path, env: dict, log: Path, *flags: str):
    """``streamlit run app.py`` in ``cwd`` on a free localhost port, its output in ``log``;
    ``(process, base URL)`` once it answers its health check (the test fails otherwise)."""
    port = _free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", *flags],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, base
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_runs, tiny_cifar100):
    _requirements()
    artifacts = tmp_path_factory.mktemp("browser_artifacts")
    shutil.copytree(trained_runs / "runs", artifacts / "runs")  # with models, for Classify
    searched = next(r for r in list_runs(artifacts) if r.model_number == 5)
    (searched.path / "trials.csv").write_text(
        "stage,trial_id,units_1,dropout,fold_1,fold_2,fold_3,mean,seconds\n"
        "1,t0,128,0.2,0.3,0.32,0.31,0.31,10\n1,t1,256,0.3,0.2,0.22,0.21,0.21,11\n"
        "2,g0,128,0.2,0.4,0.42,0.41,0.41,20\n")
    log = tmp_path_factory.mktemp("browser_log") / "streamlit.log"
    env = {**os.environ, "CIFAR_CORE_ARTIFACTS": str(artifacts),
           "CIFAR_CORE_DATA": str(tiny_cifar100), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("CIFAR_CORE_RAW_STDERR", None)  # the app as users run it: its stderr filtered
    process, base = start_streamlit(REPO, env, log, "--server.headless", "true",
                                    "--browser.gatherUsageStats", "false")
    try:
        yield base, artifacts, log
    finally:
        for job in list_jobs(artifacts):  # jobs the tests queued: none may outlive them
            try:
                stop_job(artifacts, job.run_id)
            except Exception as exc:  # keep stopping the others, then stop the server
                print(f"could not stop job {job.run_id}: {exc}")
        stop_process(process)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request) -> Path:
    chosen = os.environ.get("CIFAR_CORE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown even when output is captured
        print(f"\nbrowser screenshots: {folder}", flush=True)
    return folder


@pytest.fixture(scope="module")
def browser(server):
    sync_playwright = _requirements()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# The embedding map's most isolated point (so a click cannot land on another one): its client
# position and its test image number (customdata[1]).
LONELY_POINT_JS = """
(prefix) => {
  const gd = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
    .find(g => g._fullLayout && (g._fullLayout.title.text || '').includes(prefix));
  const layout = gd._fullLayout, box = gd.getBoundingClientRect();
  const points = [];
  gd._fullData.filter(t => t.customdata).forEach(t => Array.from(t.x).forEach((x, i) =>
    points.push({x: box.left + layout._size.l + layout.xaxis.l2p(x),
                 y: box.top + layout._size.t + layout.yaxis.l2p(t.y[i]),
                 position: Number(t.customdata[i][0]), image: Number(t.customdata[i][1])})));
  let best = null, bestGap = -1;
  for (const p of points) {
    let gap = Infinity;
    for (const q of points) if (q !== p) gap = Math.min(gap, Math.hypot(p.x - q.x, p.y - q.y));
    if (gap > bestGap) { bestGap = gap; best = p; }
  }
  return {...best, gap: bestGap};
}
"""

# The embedding map's hover thumbnail while it is shown (null while hidden): its box, the map
# position it shows, its caption, and its canvas: size on the page and in pixels, and the
# pixels themselves (RGBA, row by row).
THUMBNAIL_JS = """
() => {
  const card = document.querySelector('[data-testid="embeddingHoverThumbnail"]');
  if (!card || getComputedStyle(card).display === 'none'
      || getComputedStyle(card).visibility !== 'visible') return null;
  const canvas = card.querySelector('canvas');
  const box = card.getBoundingClientRect(), drawn = canvas.getBoundingClientRect();
  return {left: box.left, top: box.top, right: box.right, bottom: box.bottom,
          position: Number(card.dataset.position), caption: card.innerText,
          cssWidth: drawn.width, cssHeight: drawn.height,
          width: canvas.width, height: canvas.height,
          rgba: Array.from(canvas.getContext('2d')
                           .getImageData(0, 0, canvas.width, canvas.height).data)};
}
"""
# Until the thumbnail shows map position `position` with its image drawn (the sprite decoded).
THUMBNAIL_SHOWN_JS = """
(position) => {
  const card = document.querySelector('[data-testid="embeddingHoverThumbnail"]');
  if (!card || card.style.display === 'none' || card.dataset.position !== String(position))
    return false;
  const canvas = card.querySelector('canvas');
  const alpha = canvas.getContext('2d').getImageData(canvas.width / 2, canvas.height / 2,
                                                     1, 1).data[3];
  return alpha === 255;
}
"""
THUMBNAIL_HIDDEN_JS = """
() => { const card = document.querySelector('[data-testid="embeddingHoverThumbnail"]');
        return !!card && card.style.display === 'none'; }
"""


def _new_page(browser, width: int, height: int = 1400):
    """A page in a fresh context: its own cookies, so its own Streamlit session."""
    return browser.new_context(viewport={"width": width, "height": height}).new_page()


def _wait_until_rendered(page, title) -> None:
    page.get_by_role("heading", name=title).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    # The status widget shows "Running..." while the script runs.
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=RENDER_TIMEOUT_MS)
    # Plotly draws after Streamlit has placed the chart: wait until every chart has its SVG
    # and the page has stopped changing (a fixed 0.8 s sleep before: 26 s of the tour).
    page.evaluate(SETTLED_JS, SETTLE_QUIET_MS)


def _open(page, base: str, path: str, title) -> None:
    page.goto(f"{base}/{path}", wait_until="domcontentloaded")
    _wait_until_rendered(page, title)
    assert page.locator("[data-testid='stException']").count() == 0, path


def _labels_outside_plot_areas(charts: list[dict]) -> list[str]:
    """Each value label not inside any plot area of its chart, as 'title: label'."""
    problems = []
    for chart in charts:
        for label in chart["labels"]:
            inside = any(label["left"] >= a["left"] - LABEL_SLACK_PX
                         and label["right"] <= a["right"] + LABEL_SLACK_PX
                         and label["top"] >= a["top"] - LABEL_SLACK_PX
                         and label["bottom"] <= a["bottom"] + LABEL_SLACK_PX
                         for a in chart["areas"])
            if not inside:
                problems.append(f"{chart['title'] or '(untitled chart)'}: {label['text']}")
    return problems


def _choose_run(page, run_id: str, title) -> None:
    page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").click()
    page.get_by_role("option", name=re.compile(re.escape(run_id))).click()
    _wait_until_rendered(page, title)


def _wait_for_chart(page, title: str) -> None:
    """Until the chart whose title holds ``title`` is drawn (a page may hold several)."""
    page.wait_for_function(
        """(prefix) => [...document.querySelectorAll(
             '[data-testid="stPlotlyChart"] .js-plotly-plot')].some(
             g => g._fullLayout && (g._fullLayout.title.text || '').includes(prefix))""",
        arg=title, timeout=RENDER_TIMEOUT_MS)


def _pair_caption(page) -> str:
    return page.get_by_text(re.compile(r"test images of")).first.inner_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_at_two_widths(server, browser, screenshots, width):
    base, _, _ = server
    # Streamlit scrolls inside its main block, so a screenshot shows the viewport only: a
    # tall one shows each page whole.
    page = _new_page(browser, width, height=TOUR_HEIGHT)
    for number, (path, title) in enumerate(PAGES):
        _open(page, base, path, title)
        if path in CHART_PAGES:  # drawn, not only placed: plotly's SVG is there
            page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(
                timeout=RENDER_TIMEOUT_MS)
            page.evaluate(SETTLED_JS, SETTLE_QUIET_MS)
        charts = page.evaluate(CHART_GEOMETRY_JS)
        assert not _labels_outside_plot_areas(charts), (path, width)
        if path == "present":
            heatmap = next(c for c in charts if "Superclass confusion" in c["title"])
            area = heatmap["areas"][0]
            side_x, side_y = area["right"] - area["left"], area["bottom"] - area["top"]
            assert side_x >= 350, f"heatmap plot area {side_x:.0f} px wide at {width} px"
            assert 0.75 <= side_x / side_y <= 1.33, f"heatmap {side_x:.0f}x{side_y:.0f} px"
        page.screenshot(path=str(screenshots / f"{width}-{number:02d}-{path or 'overview'}.png"),
                        full_page=True)
    page.context.close()


def test_a_confusion_cell_click_shows_that_pair_and_a_run_switch_resets_it(
        server, browser, screenshots):
    base, artifacts, log = server
    records = list_runs(artifacts)
    first = next(r for r in records if r.model_number == 1 and r.label_set == "fine")
    second = next(r for r in records if r.model_number == 5)
    page = _new_page(browser, WIDTHS[0])
    _open(page, base, "confusion", "Confusion")
    _choose_run(page, first.run_id, "Confusion")
    page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(
        timeout=RENDER_TIMEOUT_MS)
    heat = page.evaluate(HEATMAP_JS)
    assert heat["type"] == "heatmap"
    shown = _pair_caption(page)
    # The cell to click, read from the chart: the largest count off the diagonal whose
    # pair is not the one shown already.
    cells = sorted(((heat["z"][r][c], r, c) for r in range(len(heat["y"]))
                    for c in range(len(heat["x"])) if r != c and heat["z"][r][c] > 0),
                   reverse=True)
    count, row, column = next(cell for cell in cells
                              if f"of {heat['y'][cell[1]]} predicted as {heat['x'][cell[2]]}"
                              not in shown)
    centre = page.evaluate(CELL_CENTRE_JS, [row, column])
    page.mouse.move(centre["x"], centre["y"])
    page.mouse.click(centre["x"], centre["y"])
    expected = f"{count} test images of {heat['y'][row]} predicted as {heat['x'][column]}"
    page.get_by_text(expected).wait_for(timeout=RENDER_TIMEOUT_MS)
    _wait_until_rendered(page, "Confusion")
    assert page.get_by_role("combobox", name="True").input_value() == heat["y"][row]
    assert page.get_by_role("combobox", name="Predicted").input_value() == heat["x"][column]
    gallery = page.locator("[data-testid='stMain'] [data-testid='stImage'] img")
    assert gallery.count() == min(24, count)
    page.screenshot(path=str(screenshots / "confusion-clicked.png"), full_page=True)

    _choose_run(page, second.run_id, "Confusion")
    # The rerun can start a moment after the status widget was last seen idle (one CI run
    # read the old chart with the new caption): read both until the chart is the new run's
    # and the caption names its largest pair, or the render timeout passes.
    deadline = time.monotonic() + RENDER_TIMEOUT_MS / 1000
    while True:
        new = page.evaluate(HEATMAP_JS)
        best = max(new["z"][r][c] for r in range(len(new["y"])) for c in range(len(new["x"]))
                   if r != c)
        caption = _pair_caption(page)
        settled = new["z"] != heat["z"] and caption.startswith(f"{best} test images of ")
        if settled or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert new["z"] != heat["z"], "the chart still shows the first run"
    assert caption.startswith(f"{best} test images of "), caption  # the new run's own pair
    page.context.close()
    assert "Traceback" not in log.read_text(errors="replace")


def test_a_class_by_model_cell_click_shows_that_class_under_that_model(server, browser,
                                                                       screenshots):
    base, artifacts, _ = server
    fine5 = next(r for r in list_runs(artifacts) if r.model_number == 5)
    page = _new_page(browser, WIDTHS[0], height=TOUR_HEIGHT)
    _open(page, base, "compare", "Compare")
    _choose_run(page, fine5.run_id, "Compare")
    title = "Recall of every class"
    _wait_for_chart(page, title)
    cell = page.evaluate(TITLED_CELL_CENTRE_JS, [title, 3, 1])
    page.mouse.move(cell["x"], cell["y"])
    page.mouse.click(cell["x"], cell["y"])
    class_name = cell["rows"][3].split(" (")[0]
    page.get_by_text(f"{class_name} under {cell['columns'][1]}").wait_for(
        timeout=RENDER_TIMEOUT_MS)
    _wait_until_rendered(page, "Compare")
    gallery = page.locator("[data-testid='stMain'] [data-testid='stImage'] img")
    # The heading can be drawn a moment before its images (one CI run in ~20 caught it).
    gallery.first.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert gallery.count() > 0
    captions = page.locator("[data-testid='stMain'] [data-testid='stImageCaption']")
    assert all(f"true {class_name}" in captions.nth(i).inner_text()
               for i in range(captions.count()))
    page.screenshot(path=str(screenshots / "compare-cell-clicked.png"))


def test_an_embedding_point_click_shows_that_image_and_its_neighbours(server, browser,
                                                                     screenshots):
    base, artifacts, _ = server
    fine5 = next(r for r in list_runs(artifacts) if r.model_number == 5)
    page = _new_page(browser, WIDTHS[0], height=TOUR_HEIGHT)
    _open(page, base, "embedding", "Embedding map")
    _choose_run(page, fine5.run_id, "Embedding map")
    title = f"Embedding map of run {fine5.run_id}"
    _wait_for_chart(page, title)
    point = page.evaluate(LONELY_POINT_JS, title)
    assert point["gap"] > 3, point  # a point a click reaches unambiguously
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    page.get_by_role("heading", name=f"Test image #{point['image']}").wait_for(
        timeout=RENDER_TIMEOUT_MS)
    _wait_until_rendered(page, "Embedding map")
    page.get_by_text("nearest neighbours, the closest first").wait_for(
        timeout=RENDER_TIMEOUT_MS)
    captions = page.locator("[data-testid='stMain'] [data-testid='stImageCaption']")
    texts = [captions.nth(i).inner_text() for i in range(captions.count())]
    assert texts[0].startswith(f"#{point['image']}: true ") and len(texts) == 1 + 8, texts
    page.screenshot(path=str(screenshots / "embedding-point-clicked.png"))
    page.context.close()


def _hover_and_check_the_thumbnail(page, title: str, images, viewport: dict) -> dict:
    """Hover the map's most isolated point; the thumbnail must show that point's test image,
    at 96 px, whole inside the window, beside the point without covering it. Returns the
    point."""
    import numpy as np

    point = page.evaluate(LONELY_POINT_JS, title)
    assert point["gap"] > 3, point
    page.mouse.move(point["x"], point["y"])
    page.wait_for_function(THUMBNAIL_SHOWN_JS, arg=point["position"], timeout=RENDER_TIMEOUT_MS)
    shown = page.evaluate(THUMBNAIL_JS)
    assert shown["position"] == point["position"]
    assert (shown["width"], shown["height"], shown["cssWidth"], shown["cssHeight"]) == (96,) * 4
    assert shown["caption"].startswith(f"test image #{point['image']}\ntrue "), shown["caption"]
    # Whole in the window, clear of the point (a marker is 6 px across), and beside it.
    assert shown["left"] >= 0 and shown["right"] <= viewport["width"], shown
    assert shown["top"] >= 0 and shown["bottom"] <= viewport["height"], shown
    assert not (shown["left"] - 4 <= point["x"] <= shown["right"] + 4
                and shown["top"] - 4 <= point["y"] <= shown["bottom"] + 4), (shown, point)
    gap_x = max(shown["left"] - point["x"], point["x"] - shown["right"], 0)
    gap_y = max(shown["top"] - point["y"], point["y"] - shown["bottom"], 0)
    assert max(gap_x, gap_y) < 60, (shown, point)
    # Its pixels are that test image's: each 3x3 block one pixel (sampled at its centre),
    # JPEG-close to the image and closer to it than to any other test image.
    drawn = np.array(shown["rgba"], dtype=int).reshape(96, 96, 4)[1::3, 1::3, :3]
    errors = np.abs(images.astype(int) - drawn).mean(axis=(1, 2, 3))
    assert int(np.argmin(errors)) == point["image"], (int(np.argmin(errors)), point)
    assert errors[point["image"]] < 17, errors[point["image"]]
    return point


def test_hovering_an_embedding_point_shows_its_image_beside_it(server, browser, screenshots,
                                                               tiny_cifar100):
    from cifar_core.analysis.images import run_dataset

    base, artifacts, log = server
    fine5 = next(r for r in list_runs(artifacts) if r.model_number == 5)
    images = run_dataset(fine5, fallback_source=str(tiny_cifar100)).x_test
    viewport = {"width": WIDTHS[0], "height": 1000}
    page = browser.new_context(viewport=viewport).new_page()
    _open(page, base, "embedding", "Embedding map")
    _choose_run(page, fine5.run_id, "Embedding map")
    title = f"Embedding map of run {fine5.run_id}"
    _wait_for_chart(page, title)
    point = _hover_and_check_the_thumbnail(page, title, images, viewport)
    page.screenshot(path=str(screenshots / "embedding-hover.png"))
    page.mouse.move(point["x"], 5)  # off the chart, up to the page's top
    page.wait_for_function(THUMBNAIL_HIDDEN_JS, timeout=RENDER_TIMEOUT_MS)
    assert page.evaluate(THUMBNAIL_JS) is None

    # A control reruns the page and draws the map as a new chart: hovering still works.
    page.get_by_text("Misclassified images only").click()
    _wait_until_rendered(page, "Embedding map")
    _wait_for_chart(page, f"{title}: {round(200 * (1 - fine5.metrics['test_top1']))} test")
    _hover_and_check_the_thumbnail(page, title, images, viewport)
    page.screenshot(path=str(screenshots / "embedding-hover-errors-only.png"))
    page.context.close()
    assert "Traceback" not in log.read_text(errors="replace")


def test_classify_an_upload_with_model_5(server, browser, screenshots):
    base, artifacts, log = server
    fine5 = next(r for r in list_runs(artifacts) if r.model_number == 5)
    page = _new_page(browser, WIDTHS[0])
    _open(page, base, "classify", "Classify")
    _choose_run(page, fine5.run_id, "Classify")
    upload = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    upload.set_input_files(files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                   "buffer": valid_images()["photo.jpg"]}])
    # the prediction first; the saliency map (off by default) once its toggle is clicked
    page.get_by_text("What drove the prediction (saliency map)").click(
        timeout=RENDER_TIMEOUT_MS)
    page.get_by_role("heading", name="What drove the prediction").wait_for(
        timeout=RENDER_TIMEOUT_MS)
    _wait_until_rendered(page, "Classify")
    # the top-5 chart and the saliency overlay, both drawn
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
        ".filter(chart => chart.querySelector('.main-svg')).length === 2",
        timeout=RENDER_TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0
    names = [name.replace("_", " ") for name in fine5.metrics["class_names"]]
    body = page.locator("[data-testid='stMain']").inner_text()
    assert any(f"Prediction\n{name}\n" in body or f"Prediction: {name}" in body
               for name in names), body[:600]
    page.screenshot(path=str(screenshots / "classify-result.png"), full_page=True)
    page.context.close()
    assert "Traceback" not in log.read_text(errors="replace")


def test_a_job_stopped_from_its_card_reads_plainly(server, browser, screenshots,
                                                   tiny_cifar100):
    base, artifacts, _ = server
    epochs = 9000  # tiny data trains several epochs a second: never done in time
    run_id = submit_job(artifacts, model=1, profile="quick", data=str(tiny_cifar100),
                        overrides={"epochs": epochs, "patience": 0})
    page = _new_page(browser, WIDTHS[0])
    _open(page, base, "train", "Train")
    # The job's card: the innermost block holding its run id and its log.
    card = page.locator("[data-testid='stVerticalBlock']").filter(has_text=run_id).filter(
        has_text="Log").last
    card.get_by_text(re.compile(rf"epoch \d+/{epochs} ·")).first.wait_for(
        timeout=RENDER_TIMEOUT_MS)
    card.get_by_role("button", name="Stop").click()
    card.get_by_text("stopped", exact=True).wait_for(timeout=RENDER_TIMEOUT_MS)
    page.wait_for_timeout(2500)  # one refresh of the job board
    text = card.inner_text()
    assert re.search(rf"at epoch \d+ of {epochs}", text), text
    assert "SIGTERM" not in text and "signal" not in text, text
    card.get_by_text("Log").click()
    log_text = card.get_by_test_id("stCode").inner_text()
    assert "Traceback" not in log_text and "RunStopped" not in log_text, log_text[-800:]
    assert "Stopped by the user" in log_text, log_text[-800:]
    page.screenshot(path=str(screenshots / "train-stopped.png"), full_page=True)
    page.context.close()


def test_the_quick_progression_is_queued_once_by_a_double_click(server, browser, screenshots):
    base, artifacts, _ = server
    before = {job.run_id for job in list_jobs(artifacts, include_finished=True)}
    page = _new_page(browser, WIDTHS[0])
    _open(page, base, "train", "Train")
    button = page.get_by_role("button", name="Queue the quick progression (models 1-5)")
    button.click()
    button.click()
    # Either click's answer: the first queues the five jobs; the second, when the browser
    # delivers it after the first rerun, says they are already queued.
    page.get_by_text(re.compile("Queued 5 training jobs|already queued")).first.wait_for(
        timeout=RENDER_TIMEOUT_MS)
    _wait_until_rendered(page, "Train")
    page.wait_for_timeout(2500)
    new = [job for job in list_jobs(artifacts, include_finished=True)
           if job.run_id not in before]
    assert sorted(job.model for job in new) == [1, 2, 3, 4, 5], [j.run_id for j in new]
    page.screenshot(path=str(screenshots / "train-progression-queued.png"), full_page=True)
    page.context.close()
    for job in new:  # no need to train them
        stop_job(artifacts, job.run_id)
    (screenshots / "pages.json").write_text(json.dumps(
        sorted(p.name for p in screenshots.glob("*.png"))))
