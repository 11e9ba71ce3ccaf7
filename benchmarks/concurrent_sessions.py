"""Many viewers at once: page render and upload-to-prediction latency, and the server's memory,
with 1, 4 and 8 browser sessions on one ``streamlit run app.py``.

    python benchmarks/concurrent_sessions.py --artifacts DIR [--levels 1 4 8] [--rounds 2]
                                             [--no-write]

``DIR`` holds the runs to classify with: the newest completed run of model 5 and of model 8
(fine labels). Each session is its own Playwright context in one headless Chromium (Debian's
``/usr/bin/chromium``), so each is its own Streamlit session; at each level all sessions run
at once, each ``--rounds`` times: Overview, Classes and Confusion (timed from navigation to
the page drawn: its title, no script running, its charts' SVG present), then Classify with
model 5 and with model 8 (timed from the upload to the prediction on the page). A session
that shows an exception, an error box or times out counts as an error. The server's resident
memory (its process and children) is sampled every 0.2 s; the peak of each level is kept.

Targets (the first-ten-minutes issue): no errors; with 8 sessions, p95 upload-to-prediction
at most 3x the single-session figure and peak RSS at most 1.5x the single-session peak.
Writes the "Concurrent sessions" block of BENCHMARKS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CIFAR_CORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGES = [("", "Overview"), ("classes", "Classes"), ("confusion", "Confusion")]
TIMEOUT_MS = 180_000
SECTION = "concurrent-sessions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


class MemorySampler:
    """Peak resident memory of a process and its children, and the CPU time of that tree and
    of this script's other descendants (the headless Chromium and Playwright's driver),
    sampled in a thread.

    The CPU split says how much of the 2 cores the viewers' browsers took: in a real demo each
    viewer's browser runs on their own machine, here all of them share the server's cores."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.process, self.interval, self.peak = psutil.Process(pid), interval, 0
        self.cpu: dict[str, dict[int, float]] = {"server": {}, "browser": {}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self, root) -> list:
        import psutil

        with contextlib.suppress(psutil.Error):
            return [root, *root.children(recursive=True)]
        return []

    def sample(self) -> int:
        """Record each process's CPU time so far; return the server tree's resident bytes."""
        import psutil

        total = 0
        server = self._tree(self.process)
        for process in server:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        # A process's last CPU reading is kept when it ends between samples (at most one
        # interval of its time is lost).
        server_pids = {process.pid for process in server}
        for process in self._tree(psutil.Process())[1:]:
            group = "server" if process.pid in server_pids else "browser"
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self.cpu[group][process.pid] = times.user + times.system
        return total

    def cpu_seconds(self, group: str) -> float:
        return sum(self.cpu[group].values()) - self._start.get(group, 0.0)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.sample()
        self._start = {group: sum(values.values()) for group, values in self.cpu.items()}
        self._wall = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()  # the CPU time up to the end
        self.wall = time.perf_counter() - self._wall


async def _drawn(page, title: str) -> None:
    await page.get_by_role("heading", name=title).first.wait_for(timeout=TIMEOUT_MS)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=TIMEOUT_MS)


async def _errors(page) -> int:
    return (await page.locator("[data-testid='stException']").count()
            + await page.locator("[data-testid='stAlertContentError']").count())


async def session(browser, base: str, runs: dict[int, str], photo: bytes, rounds: int,
                  results: dict) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1400})
    page = await context.new_page()
    try:
        for _ in range(rounds):
            for path, title in PAGES:
                start = time.perf_counter()
                await page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                await _drawn(page, title)
                await page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(
                    timeout=TIMEOUT_MS)
                results["render"].append(time.perf_counter() - start)
                results["errors"] += await _errors(page)
            await page.goto(f"{base}/classify", wait_until="domcontentloaded")
            await _drawn(page, "Classify")
            for model, run_id in runs.items():
                await page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']"
                                   ).click()
                await page.get_by_role("option", name=re.compile(re.escape(run_id))).click()
                await _drawn(page, "Classify")
                upload = page.locator("[data-testid='stFileUploaderDropzoneInput']")
                start = time.perf_counter()
                await upload.set_input_files(files=[{"name": f"photo-{model}.png",
                                                     "mimeType": "image/png",
                                                     "buffer": photo}])
                await page.get_by_text(re.compile(r"^Prediction:")).first.wait_for(
                    timeout=TIMEOUT_MS)
                await _drawn(page, "Classify")
                results[f"predict_m{model}"].append(time.perf_counter() - start)
                results["errors"] += await _errors(page)
    except Exception as exc:  # a timeout or a crash of this session: counted, reported
        results["errors"] += 1
        results["failures"].append(f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await context.close()


async def run_level(base: str, sessions: int, runs: dict[int, str], photo: bytes,
                    rounds: int) -> dict:
    from playwright.async_api import async_playwright

    results = {"render": [], "errors": 0, "failures": [],
               **{f"predict_m{model}": [] for model in runs}}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(session(browser, base, runs, photo, rounds, results)
                                   for _ in range(sessions)))
        finally:
            await browser.close()
    return results


def counted_runs(artifacts: Path) -> dict[int, str]:
    from cifar_core.runs.store import list_runs

    runs = {}
    for record in list_runs(artifacts):  # newest first
        if (record.status == "completed" and record.label_set == "fine"
                and record.model_number in (5, 8) and record.model_number not in runs):
            runs[record.model_number] = record.run_id
    missing = {5, 8} - set(runs)
    if missing:
        raise SystemExit(f"no completed fine run of model(s) {sorted(missing)} under "
                         f"{artifacts}: train them first (cifar-core train --model 5 / 8)")
    return dict(sorted(runs.items()))


def _cpus(text: str | None) -> set[int] | None:
    """``"0"``, ``"0,1"`` or ``"2-7"`` as a set of CPU numbers (None: no pinning)."""
    if not text:
        return None
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    unknown = cpus - os.sched_getaffinity(0)
    if unknown:
        raise SystemExit(f"CPUs {sorted(unknown)} are not available here "
                         f"(this process may use {sorted(os.sched_getaffinity(0))})")
    return cpus


def start_server(artifacts: Path, log: Path,
                 cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "CIFAR_CORE_ARTIFACTS": str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process, base
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"streamlit did not start; see {log}")


def _photo() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def render(levels: dict[int, dict], runs: dict[int, str], rounds: int,
           load_before: float, pinning: str = "") -> str:
    from cifar_core.bench import provenance_lines
    from cifar_core.runs.provenance import environment_info

    env = environment_info()
    lines = [f"Generated by `python benchmarks/concurrent_sessions.py --levels "
             f"{' '.join(map(str, levels))} --rounds {rounds}{pinning}` on "
             f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
             f"(1-min load average before: {load_before:.2f}, at the end: "
             f"{os.getloadavg()[0]:.2f}).",
             "", *provenance_lines({}, env)[:3],
             f"- Runs classified: model 5 `{runs[5]}`, model 8 `{runs[8]}`; one Playwright "
             "context (its own Streamlit session) per viewer in one headless Chromium, all "
             f"viewers at once, each {rounds} round(s) of Overview, Classes, Confusion, then "
             "an upload on Classify with each model, after one warm-up session (TensorFlow "
             "imported, both models loaded once, as a server that has been used).", "",
             "| sessions | page render p50 / p95 | upload to prediction, model 5: p50 / p95 "
             "| model 8: p50 / p95 | server RSS peak | errors | wall | CPU: server / browsers |",
             "|---|---|---|---|---|---|---|---|"]
    for count, result in levels.items():
        cells = [str(count)]
        for key in ("render", "predict_m5", "predict_m8"):
            values = result[key]
            cells.append(f"{statistics.median(values):.2f} s / {_percentile(values, 0.95):.2f} s"
                         if values else "-")
        cells += [f"{result['rss'] / 2**20:.0f} MiB", str(result["errors"]),
                  f"{result['wall']:.0f} s",
                  f"{result['cpu_server']:.0f} s / {result['cpu_browser']:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    first, last = levels[min(levels)], levels[max(levels)]
    for key in ("predict_m5", "predict_m8"):
        if first[key] and last[key]:
            ratio = _percentile(last[key], 0.95) / _percentile(first[key], 0.95)
            lines.append(f"- {max(levels)} sessions vs 1, p95 upload to prediction "
                         f"({key[-2:]}): {ratio:.2f}x (target at most 3x)")
    lines.append(f"- {max(levels)} sessions vs 1, peak RSS: {last['rss'] / first['rss']:.2f}x "
                 "(target at most 1.5x)")
    lines.append("- CPU: seconds of CPU (user + system) of the server's process tree and of the "
                 "browser's (headless Chromium and Playwright's driver) over the level's wall "
                 "time; the machine has 2 cores, so 2 x wall is all there is.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    # In a demo each viewer's browser runs on their own machine; here they share the server's.
    # Pinning the server and the browsers to separate CPUs measures the server's share alone.
    parser.add_argument("--server-cpus", help="CPUs for the server, e.g. 0 or 0,1")
    parser.add_argument("--browser-cpus", help="CPUs for the browsers (this script's "
                        "children other than the server), e.g. 1 or 2-7")
    args = parser.parse_args(argv)
    server_cpus, browser_cpus = _cpus(args.server_cpus), _cpus(args.browser_cpus)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: apt-get install chromium (or set "
                         "CIFAR_CORE_CHROMIUM)")
    runs = counted_runs(args.artifacts)
    load_before = os.getloadavg()[0]
    photo = _photo()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "concurrent_sessions_streamlit.log"
    process, base = start_server(args.artifacts, log, server_cpus)
    if browser_cpus:  # inherited by Playwright's driver and Chromium, started after this
        os.sched_setaffinity(0, browser_cpus)
    levels = {}
    try:
        asyncio.run(run_level(base, 1, runs, photo, 1))  # warm-up: imports, model loads
        for count in args.levels:
            with MemorySampler(process.pid) as memory:
                result = asyncio.run(run_level(base, count, runs, photo, args.rounds))
            result["rss"] = memory.peak
            result["wall"] = memory.wall
            result["cpu_server"] = memory.cpu_seconds("server")
            result["cpu_browser"] = memory.cpu_seconds("browser")
            levels[count] = result
            print(f"{count} session(s): render p95 {_percentile(result['render'], 0.95):.2f} s"
                  f", errors {result['errors']}, RSS {memory.peak / 2**20:.0f} MiB"
                  + (f", failures {result['failures']}" if result["failures"] else ""),
                  flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    if "Traceback" in log.read_text(errors="replace"):
        print(f"the server log has a traceback: {log}")
    pinning = "".join(f" --{name}-cpus {value}" for name, value in
                      (("server", args.server_cpus), ("browser", args.browser_cpus)) if value)
    body = render(levels, runs, args.rounds, load_before, pinning)
    from dashboard import publish

    # A pinned run is its own block: it answers another question than the plain one.
    publish(body, SECTION + ("-pinned" if pinning else ""),
            "Concurrent sessions (many viewers at once)", not args.no_write)
    return 1 if any(result["errors"] for result in levels.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
