"""End to end in a real browser: ``streamlit run app.py`` driven by headless Chromium.

Starts the app on a free localhost port against the fixture runs, visits every page,
uploads an image on Classify and checks that the prediction appears, and saves a screenshot
of every page in a folder it prints (``CIFAR_CORE_SCREENSHOTS`` chooses it; default: pytest's
temporary folder). Needs Debian's ``chromium`` and Python's ``playwright``; skipped with the
reason where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hostile_files import valid_images

from cifar_core.runs.store import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CIFAR_CORE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGES = [  # (url path, title on the page)
    ("", "Overview"), ("present", "cifar100: from a one-layer CNN to transfer learning"),
    ("train", "Train"), ("tuning", "Tuning"), ("classes", "Classes"),
    ("confusion", "Confusion"),
    ("augmentation", "Augmentation"), ("classify", "Classify")]
START_TIMEOUT = 120
RENDER_TIMEOUT_MS = 120_000


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


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_runs):
    _requirements()
    artifacts = tmp_path_factory.mktemp("browser_artifacts")
    shutil.copytree(fixture_runs / "runs", artifacts / "runs")
    searched = next(r for r in list_runs(artifacts) if r.model_number == 5)
    (searched.path / "trials.csv").write_text(
        "stage,trial_id,units_1,dropout,fold_1,fold_2,fold_3,mean,seconds\n"
        "1,t0,128,0.2,0.3,0.32,0.31,0.31,10\n1,t1,256,0.3,0.2,0.22,0.21,0.21,11\n"
        "2,g0,128,0.2,0.4,0.42,0.41,0.41,20\n")
    port = _free_port()
    log = tmp_path_factory.mktemp("browser_log") / "streamlit.log"
    env = {**os.environ, "CIFAR_CORE_ARTIFACTS": str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, artifacts, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request) -> Path:
    chosen = os.environ.get("CIFAR_CORE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown even when output is captured
        print(f"\nbrowser screenshots: {folder}", flush=True)
    return folder


def _wait_until_rendered(page, title: str) -> None:
    page.get_by_role("heading", name=title).first.wait_for(timeout=RENDER_TIMEOUT_MS)
    # The status widget shows "Running..." while the script runs.
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=RENDER_TIMEOUT_MS)
    page.wait_for_timeout(800)  # let plotly finish drawing before the screenshot


def test_every_page_in_chromium_and_a_prediction(server, screenshots, tmp_path):
    sync_playwright = _requirements()
    base, artifacts, log = server
    fine5 = next(r for r in list_runs(artifacts) if r.model_number == 5)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 1600})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            for number, (path, title) in enumerate(PAGES):
                page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                _wait_until_rendered(page, title)
                assert page.locator("[data-testid='stException']").count() == 0, path
                if path in ("", "present", "tuning", "classes", "confusion", "augmentation"):
                    # drawn, not only placed: plotly's SVG is there
                    page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(
                        timeout=RENDER_TIMEOUT_MS)
                page.screenshot(path=str(screenshots / f"{number:02d}-{path or 'overview'}.png"),
                                full_page=True)

            # Classify with model 5: choose it in the sidebar's run picker, then upload.
            picker = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']")
            picker.click()
            page.get_by_role("option", name=fine5.run_id).click()
            _wait_until_rendered(page, "Classify")
            upload = page.locator("[data-testid='stFileUploaderDropzoneInput']")
            upload.set_input_files(files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                           "buffer": valid_images()["photo.jpg"]}])
            label = page.locator("[data-testid='stMetricLabel']", has_text="Prediction")
            label.wait_for(timeout=RENDER_TIMEOUT_MS)
            _wait_until_rendered(page, "Classify")
            value = page.locator("[data-testid='stMetricValue']").first.inner_text().strip()
            assert value in fine5.metrics["class_names"]
            # the top-5 chart and the saliency overlay, both drawn
            page.get_by_role("heading", name="What drove the prediction").wait_for(
                timeout=RENDER_TIMEOUT_MS)
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
                ".filter(chart => chart.querySelector('.main-svg')).length === 2",
                timeout=RENDER_TIMEOUT_MS)
            assert page.locator("[data-testid='stException']").count() == 0
            page.screenshot(path=str(screenshots / f"{len(PAGES):02d}-classify-result.png"),
                            full_page=True)
        finally:
            context.close()
    assert "Traceback" not in log.read_text(errors="replace")
    shots = sorted(p.name for p in screenshots.glob("*.png"))
    assert len(shots) == len(PAGES) + 1
    (screenshots / "pages.json").write_text(json.dumps(shots))
