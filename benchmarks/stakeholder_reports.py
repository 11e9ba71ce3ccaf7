"""Stakeholder reports benchmark: the time to produce the PDF and the slide deck of 10 runs,
and the routes the choice was made between.

    python benchmarks/stakeholder_reports.py [--runs-dir DIR] [--repeats 3] [--browser PATH]
                                             [--no-write]

Without ``--runs-dir`` it makes 10 counted runs (models 1-8 fine, 1 and 7 coarse) by copying
the committed fixture runs (tests/fixtures/runs) under distinct run ids, each recording its
model's current spec, into a temporary folder. For each format (HTML for reference, PDF,
PPTX) it times ``cifar_core.reports.outputs.build_report`` as the CLI and the Present page
call it: the first call in the process (cold: imports) and the median of ``--repeats`` more.
Then the candidate routes on the same runs: printing the interactive HTML report as it is
(plotly.js drawing in the page) with ``chromium --print-to-pdf``; drawing one chart with
kaleido against one ``chromium --screenshot`` a chart. Writes the "Stakeholder reports"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
FIXTURE_RUNS = REPO / "tests" / "fixtures" / "runs"
KINDS = [(n, "fine") for n in range(1, 9)] + [(1, "coarse"), (7, "coarse")]


def make_runs(root: Path) -> Path:
    """10 counted runs under ``root/runs``, copied from the fixture runs."""
    from cifar_core.models.specs import SPECS

    sources = {labels: next(FIXTURE_RUNS.glob(f"*-m{'1' if labels == 'coarse' else '5'}-"
                                             f"{labels}")) for labels in ("fine", "coarse")}
    for index, (model, labels) in enumerate(KINDS):
        run_id = f"20261202-03{index:02d}00-m{model}-{labels}"
        target = root / "runs" / run_id
        shutil.copytree(sources[labels], target)
        run = json.loads((target / "run.json").read_text())
        run["run_id"] = run_id
        (target / "run.json").write_text(json.dumps(run))
        config = json.loads((target / "config.json").read_text())
        config["model"] = SPECS[model].to_dict()
        config["hyperparameters"]["model"] = model
        (target / "config.json").write_text(json.dumps(config))
    return root


def _pages(fmt: str, data: bytes) -> int | None:
    if fmt == "pdf":
        try:
            import pypdf
        except ImportError:
            return None
        return len(pypdf.PdfReader(io.BytesIO(data)).pages)
    if fmt == "pptx":
        from pptx import Presentation

        return len(Presentation(io.BytesIO(data)).slides)
    return None


def time_formats(root: Path, repeats: int, browser: str | None) -> list[dict]:
    from cifar_core.analysis.report import report_scope
    from cifar_core.reports.outputs import build_report
    from cifar_core.runs.store import list_runs

    records = list_runs(root)
    _, _, counting = report_scope(records)
    rows = []
    for fmt in ("html", "pdf", "pptx"):
        start = time.perf_counter()
        data = build_report(fmt, records, counting, browser=browser)
        cold = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            data = build_report(fmt, records, counting, browser=browser)
            times.append(time.perf_counter() - start)
        rows.append({"format": fmt, "runs": len(counting), "cold_s": cold,
                     "median_s": statistics.median(times), "min_s": min(times),
                     "max_s": max(times), "bytes": len(data), "pages": _pages(fmt, data)})
        print(rows[-1], flush=True)
    return rows


def compare_routes(root: Path, browser: str | None) -> dict:
    """The alternatives: the interactive HTML printed as it is, and one chart a browser."""
    from cifar_core.analysis.report import report_scope
    from cifar_core.analysis.runs import progression_points
    from cifar_core.charts.progression import progression_figure
    from cifar_core.reports.html import build_html_report
    from cifar_core.reports.render import CHROMIUM_FLAGS, figure_images, find_browser
    from cifar_core.runs.store import list_runs

    path = find_browser(browser)
    records = list_runs(root)
    _, _, counting = report_scope(records)
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        page = folder / "report.html"
        page.write_text(build_html_report(records, counting), encoding="utf-8")
        start = time.perf_counter()
        subprocess.run([path, *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'a'}",
                        "--no-pdf-header-footer", f"--print-to-pdf={folder / 'a.pdf'}",
                        page.as_uri()], capture_output=True, timeout=300, check=True)
        found["html_print_s"] = time.perf_counter() - start
        found["html_print_pages"] = _pages("pdf", (folder / "a.pdf").read_bytes())
        try:
            import pypdf

            text = "".join(p.extract_text() for p in pypdf.PdfReader(folder / "a.pdf").pages)
            # text only the drawn charts hold: a report marker's label, the matrix's axis
            found["html_print_charts_drawn"] = "report 59.5%" in text and "predicted" in text
        except ImportError:
            found["html_print_charts_drawn"] = None
        figure = progression_figure(progression_points(counting), title=None)
        chart = folder / "chart.html"
        figure.write_html(chart, include_plotlyjs=True, full_html=True, default_width=880,
                          default_height=500)
        start = time.perf_counter()
        subprocess.run([path, *CHROMIUM_FLAGS, f"--user-data-dir={folder / 'b'}",
                        "--window-size=880,520", "--force-device-scale-factor=2",
                        f"--screenshot={folder / 'b.png'}", chart.as_uri()],
                       capture_output=True, timeout=300, check=True)
        found["screenshot_one_chart_s"] = time.perf_counter() - start
        for count in (1, 12):
            start = time.perf_counter()
            figure_images([figure] * count, "png", browser=path, width=880)
            found[f"kaleido_{count}_charts_s"] = time.perf_counter() - start
    print(found, flush=True)
    return found


def markdown(rows: list[dict], routes: dict, command: str, made: bool, browser: str) -> str:
    from dashboard import environment_lines

    from cifar_core.runs.provenance import package_versions

    versions = package_versions(("kaleido", "choreographer", "python-pptx", "pypdf"))
    chromium = subprocess.run([browser, "--version"], capture_output=True,
                              text=True).stdout.strip()
    lines = [f"Generated by `{command}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC.",
             "", *environment_lines(),
             f"- {chromium}; " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             "- The machine was shared with other work at the time (another session's edits "
             "and tests): the times are upper bounds.",
             f"- Runs: {rows[0]['runs']} counted runs" + (
                 " (models 1-8 fine, 1 and 7 coarse: the committed fixture runs copied under "
                 "distinct ids, each recording its model's current spec)" if made else ""),
             "- `build_report` as `cifar-core report` and the Present page call it; cold: the "
             "first call in the process (imports); then the median (min-max) of the repeats. "
             "Every PDF or PPTX call starts its own Chromium.",
             "",
             "| format | cold | median (min-max) | size | pages / slides |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['format']} | {row['cold_s']:.1f} s | {row['median_s']:.1f} s "
                     f"({row['min_s']:.1f}-{row['max_s']:.1f}) | {row['bytes'] / 1e6:.2f} MB | "
                     f"{row['pages'] if row['pages'] is not None else '-'} |")
    lines += ["", "Routes on the same runs:", "",
              f"- The interactive HTML report printed as it is (`chromium --print-to-pdf`, "
              f"plotly.js drawing in the page): {routes['html_print_s']:.1f} s, "
              f"{routes['html_print_pages']} pages, charts drawn (their text in the PDF): "
              f"{routes['html_print_charts_drawn']}.",
              f"- One chart as PNG by `chromium --screenshot` (a process a chart): "
              f"{routes['screenshot_one_chart_s']:.1f} s; by kaleido (one browser for all): "
              f"1 chart {routes['kaleido_1_charts_s']:.1f} s, 12 charts "
              f"{routes['kaleido_12_charts_s']:.1f} s.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, help="artifacts folder (default: 10 runs "
                                                      "made from the fixture runs)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", help="Chromium (default: as cifar-core finds it)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from cifar_core.reports.outputs import artifacts_of
    from cifar_core.reports.render import find_browser

    browser = find_browser(args.browser)
    with tempfile.TemporaryDirectory(prefix="stakeholder-bench-") as folder:
        root = artifacts_of(args.runs_dir) if args.runs_dir else make_runs(Path(folder))
        rows = time_formats(root, args.repeats, args.browser)
        routes = compare_routes(root, args.browser)
    command = "python benchmarks/stakeholder_reports.py" + (
        f" --runs-dir {args.runs_dir}" if args.runs_dir else "") + (
        f" --repeats {args.repeats}" if args.repeats != 3 else "")
    body = markdown(rows, routes, command, made=args.runs_dir is None, browser=browser)
    from dashboard import publish

    publish(body, "stakeholder-reports", "Stakeholder reports: PDF and slides", not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
