"""A quiet terminal: ``streamlit run app.py`` in a checkout whose ``.venv`` holds tens of
thousands of files prints no file-watcher noise and none of TensorFlow's start-up lines while
pages are used in a real browser (a prediction included, so TensorFlow is loaded)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hostile_files import valid_images
from processes import stop_process
from test_browser import CHROMIUM, CHROMIUM_ARGS, _requirements, start_streamlit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
VENV_FILES = 30_000  # about what a virtual environment with TensorFlow holds (50,000)
NOISE = ("Inotify", "inotify", "watchdog", "reconciling", "absl::InitializeLog",
         "oneDNN custom operations", "cudart_stub", "cuInit", "Traceback")


def _checkout_with_a_big_venv(root: Path) -> Path:
    app = root / "checkout"
    app.mkdir()
    shutil.copy(REPO / "app.py", app)
    shutil.copytree(REPO / "pages", app / "pages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / ".streamlit", app / ".streamlit")
    for folder in range(VENV_FILES // 100):
        package = app / ".venv" / "lib" / f"package_{folder:03d}"
        package.mkdir(parents=True)
        for number in range(100):
            (package / f"module_{number:02d}.py").write_text("x = 1\n")
    return app


def test_the_terminal_stays_quiet_while_pages_are_used(tmp_path, trained_runs):
    sync_playwright = _requirements()
    app = _checkout_with_a_big_venv(tmp_path)
    artifacts = tmp_path / "artifacts"
    shutil.copytree(trained_runs / "runs", artifacts / "runs")
    log = tmp_path / "streamlit.log"
    env = {key: value for key, value in os.environ.items()
           if key not in ("CIFAR_CORE_RAW_STDERR", "TF_CPP_MIN_LOG_LEVEL")}  # as users run it
    env["CIFAR_CORE_ARTIFACTS"] = str(artifacts)
    server, base = start_streamlit(app, env, log)  # the README's command, in the copy
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                for path, title in (("", "Overview"), ("classes", "Classes"),
                                    ("classify", "Classify")):
                    page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                    page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
                upload = page.locator("[data-testid='stFileUploaderDropzoneInput']")
                upload.set_input_files(files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                               "buffer": valid_images()["photo.jpg"]}])
                page.get_by_text("Prediction:").first.wait_for(timeout=120_000)
            finally:
                browser.close()
        time.sleep(1)  # what the server still had to say
    finally:
        stop_process(server)
    text = log.read_text(errors="replace")
    assert "You can now view your Streamlit app" in text  # the log is the server's
    assert not [line for line in text.splitlines() if any(n in line for n in NOISE)], text
