"""The stakeholder report in any of its formats, for the CLI and the Present page alike.

``cifar-core report --format html|pdf|pptx`` and the Present page's downloads both come
here, with the same counted runs (``cifar_core.analysis.report.report_scope``: the newest
data set's runs, the counting run of each model) and the same title, so a file made in a
terminal says what the page shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cifar_core import settings
from cifar_core.analysis.report import report_scope, report_title
from cifar_core.analysis.runs import RunKey
from cifar_core.errors import CifarCoreError, ConfigError
from cifar_core.runs.store import RUNS_SUBDIR, RunRecord, list_runs


@dataclass(frozen=True)
class ReportFormat:
    name: str
    suffix: str
    media_type: str
    needs_browser: bool


FORMATS = {f.name: f for f in (
    ReportFormat("html", ".html", "text/html", False),
    ReportFormat("pdf", ".pdf", "application/pdf", True),
    ReportFormat("pptx", ".pptx",
                 "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                 True))}


def report_format(name: str) -> ReportFormat:
    """The format called ``name``; a ``ConfigError`` naming the known ones otherwise."""
    try:
        return FORMATS[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown report format {name!r}: choose one of "
                          f"{', '.join(FORMATS)}") from None


def report_file_name(name: str, generated_at: datetime | None = None) -> str:
    """``cifar-report-20261202-0930.pdf``: the name a download or ``--out`` default gets."""
    stamp = (generated_at or datetime.now(UTC)).strftime("%Y%m%d-%H%M")
    return f"cifar-report-{stamp}{report_format(name).suffix}"


def build_report(name: str, records: Iterable[RunRecord],
                 counting: Mapping[RunKey, RunRecord], *, title: str | None = None,
                 browser: str | None = None, generated_at: datetime | None = None) -> bytes:
    """The report of ``counting`` (and ``records`` for the all-runs table) as bytes in the
    format ``name``; PDF and slides need a Chromium (``browser``, see
    ``cifar_core.reports.render.find_browser``)."""
    fmt = report_format(name)  # an unknown format is refused before anything is built
    if not counting:
        raise CifarCoreError("no completed runs to report on: train a model first "
                             "(cifar-core train --model 1, or the Train page)")
    title = title or report_title(counting)
    records = list(records)
    if fmt.name == "html":
        from cifar_core.reports.html import build_html_report

        return build_html_report(records, counting, title=title,
                                 generated_at=generated_at).encode("utf-8")
    if fmt.name == "pdf":
        from cifar_core.reports.pdf import build_pdf_report

        return build_pdf_report(records, counting, title=title, browser=browser,
                                generated_at=generated_at)
    from cifar_core.reports.slides import build_slides

    return build_slides(records, counting, title=title, browser=browser,
                        generated_at=generated_at)


def artifacts_of(runs_dir: str | os.PathLike | None) -> Path:
    """The artifacts root for a ``--runs-dir``: the folder itself where it holds ``runs/``,
    its parent where it *is* a ``runs/`` folder, else the folder (then it has no runs)."""
    root = settings.artifacts_dir(runs_dir)
    if not (root / RUNS_SUBDIR).is_dir() and root.name == RUNS_SUBDIR:
        return root.parent
    return root


def report_from_folder(name: str, runs_dir: str | os.PathLike | None = None, *,
                       browser: str | None = None, dataset: str | None = None,
                       generated_at: datetime | None = None) -> tuple[bytes, dict]:
    """The report of the runs under ``runs_dir`` (default: the artifacts folder), counted
    as the Present page counts them by default: (bytes, counted runs)."""
    report_format(name)
    root = artifacts_of(runs_dir)
    records = list_runs(root)
    _, _, counting = report_scope(records, dataset=dataset)
    if not counting:
        raise CifarCoreError(f"no completed runs under {root / RUNS_SUBDIR}: train a model "
                             "first (cifar-core train --model 1) or point --runs-dir at "
                             "another folder")
    return build_report(name, records, counting, browser=browser,
                        generated_at=generated_at), counting
