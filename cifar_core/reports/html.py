"""The stakeholder report as one self-contained HTML file: the presentation's content, its
figures, and the configuration behind every number.

It sits above ``cifar_core.analysis`` (the numbers) and ``cifar_core.charts`` (the figures),
so that neither of those needs the other the wrong way round. Every number names the run it
came from, and the report lists each run's configuration (model, hyperparameters, seed, data
identity, code version), so a reader can trace and reproduce any figure. The HTML embeds
plotly.js: it opens offline, as one file. ``report_sections`` is the content, shared with the
printed report (``build_print_html``, static figures, made into a PDF by
``cifar_core.reports.pdf``), so the two never say different things.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import PurePath

import plotly.graph_objects as go

from cifar_core.analysis.card import model_card
from cifar_core.analysis.classes import (
    confusion_matrix,
    has_superclasses,
    superclass_names,
    weakest_and_strongest,
)
from cifar_core.analysis.report import config_row, focus_run, headline_numbers, metrics_frame
from cifar_core.analysis.runs import (
    RunKey,
    dataset_display_name,
    dataset_label,
    model_title,
    progression_points,
)
from cifar_core.charts.classes import extremes_figure
from cifar_core.charts.confusion import confusion_figure
from cifar_core.charts.progression import progression_figure
from cifar_core.charts.style import square_cells
from cifar_core.models.specs import REPORT_RESULTS
from cifar_core.reports.card import card_html
from cifar_core.runs.store import RunRecord

_CSS = """
body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2733;padding:0 1rem}h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid
#dde3ea;padding-bottom:.3rem}h3{margin:1.4rem 0 .4rem;font-size:1rem}.muted{color:#5f6b7a;
font-size:.9rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #dde3ea;
border-radius:8px;padding:.8rem 1rem;min-width:200px}.card .value{font-size:2rem;font-weight:600}
.table-wrap{max-width:100%;overflow-x:auto}table{border-collapse:collapse;width:100%;
font-size:.85rem}th,td{border:1px solid #dde3ea;padding:.3rem .5rem;text-align:left;
vertical-align:top;overflow-wrap:anywhere}th{background:#f4f6f9}table.settings th{width:12rem;
font-weight:600}code{font-size:.85em}.card-grid{display:grid;
grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:.5rem 1.5rem}
"""


def _esc(value) -> str:
    return html.escape("-" if value is None else str(value))


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _figure_html(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def _table(rows: list[dict]) -> str:
    """Rows as an HTML table whose cells wrap, inside a box that scrolls sideways rather
    than push the page wider when a table still does not fit."""
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_esc(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row.values()) + "</tr>"
                   for row in rows)
    return (f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _settings_table(settings: Mapping[str, object]) -> str:
    """One run's configuration as a two-column table (setting, value): fits any width."""
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
                   for k, v in settings.items())
    return f"<div class='table-wrap'><table class='settings'><tbody>{body}</tbody></table></div>"


# Recorded hyperparameters that apply only to some models (``TrainConfig`` records them all).
BACKBONE_SETTINGS = ("freeze_base", "feature_cache", "warm_start", "head_learning_rate")
SEARCH_SETTINGS = ("search_mode", "search_trials", "search_folds", "search_epochs",
                   "search_batch_size", "grid_epochs", "grid_batch_size", "grid_trials",
                   "grid_folds")
SHOWN_ELSEWHERE = ("model", "labels", "profile", "seed", "backbone_weights")


def _file_name(value):
    """A machine-local path as its file name (the report travels; paths do not)."""
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return PurePath(value).name
    return value


def applicable_settings(record: RunRecord) -> dict:
    """The recorded hyperparameters that apply to the run's model, name -> value.

    Every run records every setting of ``TrainConfig``; a model 1-5 run has no backbone
    and no search, so those settings are left out, as are unset values (head overrides it
    did not use) and a warm start it did not do. Paths are reduced to their file names.
    """
    config = record.config or {}
    spec = config.get("model") or {}
    hyper = config.get("hyperparameters") or {}
    backbone = spec.get("stem") == "mobilenet"
    search = bool(spec.get("hyperparameter_search"))
    shown = {}
    for key, value in hyper.items():
        if key in SHOWN_ELSEWHERE or value is None:
            continue
        if key in BACKBONE_SETTINGS and not backbone:
            continue
        if key in ("warm_start", "head_learning_rate") and not hyper.get("warm_start"):
            continue
        if key in SEARCH_SETTINGS and not search:
            continue
        shown[key] = _file_name(value)
    return shown


def _backbone_text(config: dict) -> str | None:
    identity = config.get("backbone_weights")
    if not isinstance(identity, dict):
        return None
    weights = identity.get("weights")
    if weights in (None, "imagenet"):
        return weights or "random initialisation"
    sha = str(identity.get("sha256") or "")[:12]
    return f"{_file_name(weights)}" + (f" (sha256 {sha})" if sha else "")


def _search_text(config: dict) -> str | None:
    search = config.get("search")
    if not isinstance(search, dict):
        return None
    parts = []
    if search.get("stage1_trials") is not None:
        parts.append(f"{search['stage1_trials']} random-search trials")
    if search.get("stage2_trials") is not None:
        parts.append(f"{search['stage2_trials']} grid trials")
    chosen = search.get("chosen_trial_id")
    if chosen is not None:
        score = search.get("chosen_mean_val_accuracy")
        parts.append(f"chosen: trial {chosen}" + (f" (mean validation accuracy {_pct(score)})"
                                                  if isinstance(score, (int, float)) else ""))
    if search.get("mode"):
        parts.append(f"mode {search['mode']}")
    return ", ".join(parts) or None


def _configuration_rows(record: RunRecord) -> dict:
    """Everything needed to trace and reproduce a run's numbers, without machine paths."""
    config = record.config or {}
    spec = config.get("model") or {}
    row = config_row(record)
    settings = {
        "run id": record.run_id,
        "model": row["model_title"],
        "what it adds": spec.get("change"),
        "labels / profile": f"{row['labels']} / {row['profile']}",
        "hyperparameters": ", ".join(f"{k}={v}" for k, v in applicable_settings(record).items())
        or None,
        "seed": row["seed"],
        "epochs run": row["epochs_run"],
        "training (s)": row["training_seconds"],
        "whole run (min)": row["run_minutes"],
        "data": f"{dataset_display_name(row['dataset'])} sha256 "
                f"{str(row['dataset_sha256'] or '')[:16]} "
                f"({row['num_train']} train / {row['num_test']} test)",
    }
    if spec.get("stem") == "mobilenet":
        settings["backbone weights"] = _backbone_text(config)
    if spec.get("hyperparameter_search"):
        settings["search"] = _search_text(config)
    settings.update({
        "code": f"{str(row['git_commit'] or 'unknown')[:12]}"
                + (" (uncommitted changes)" if row["git_dirty"] else ""),
        "TensorFlow / Keras": f"{row['tensorflow']} / {row['keras']}",
        "created": row["created_at"],
    })
    return settings


def _runs_rows(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord]
               ) -> list[dict]:
    """The completed runs for the report's table: the columns a reader compares."""
    frame = metrics_frame(records, counting)
    return [{"run id": r["run_id"], "counts": "yes" if r["counts"] else "no",
             "model": r["model"], "labels": r["labels"], "profile": r["profile"],
             "top-1": _pct(r["test_top1"]), "top-5": _pct(r["test_top5"]),
             "superclass": _pct(r["test_superclass_top1"]), "epochs run": r["epochs_run"],
             "training (s)": r["training_seconds"], "whole run (min)": r["run_minutes"],
             "created": r["created_at"]}
            for r in frame.astype(object).where(frame.notna(), None).to_dict("records")]


def report_sections(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord], *,
                    title: str, generated: str, figure: Callable[[go.Figure], str],
                    table_first: bool = False) -> list[str]:
    """The report's content as HTML fragments, in order: headline, progression, inside the
    best model, all completed runs, a model card per counted run, and the configuration
    behind every number.

    ``figure`` turns a plotly figure into its HTML: a plotly.js div for the interactive
    report, an inline SVG drawn beforehand for the printed one (``cifar_core.reports.pdf``).
    ``table_first`` puts the counted runs' numbers beside the headline, before the chart
    (the printed report's first page is then the whole summary).
    """
    records = list(records)
    points = progression_points(counting)
    parts = [f"<h1>{_esc(title)}</h1>",
             f"<p class='muted'>Generated {_esc(generated)} from {len(counting)} counted runs. "
             "Every number names the run it comes from; the configuration of each run is "
             "listed at the end.</p>"]
    if not points:
        parts.append("<p>No completed runs yet.</p>")
    else:
        datasets = sorted({p.dataset for p in points if p.dataset})
        parts.append(f"<p class='muted'>Data: {_esc('; '.join(datasets))}</p>")
        cards = "".join(
            f"<div class='card'><div class='muted'>{_esc(n.label)}</div>"
            f"<div class='value'>{_pct(n.value)}</div><div>{_esc(n.detail)}</div>"
            f"<div class='muted'>run <code>{_esc(n.run_id)}</code></div></div>"
            for n in headline_numbers(points))
        numbers = _table([{"model": model_title(p.model), "labels": p.labels,
                           "top-1": _pct(p.top1), "top-5": _pct(p.top5),
                           "superclass": _pct(p.superclass), "profile": p.profile,
                           "run id": p.run_id} for p in points])
        parts += ["<h2>Headline</h2>", f"<div class='cards'>{cards}</div>"]
        if table_first:
            parts += ["<h3>The counted runs</h3>", numbers]
        parts += ["<h2 class='section-progression'>Progression</h2>",
                  figure(progression_figure(points)),
                  "<p class='muted'>Grey markers are the report's published CIFAR-100 results "
                  + _esc(", ".join(f"model {m}: fine {v.get('fine')}%, superclasses "
                                   f"{v.get('superclass')}%"
                                   for m, v in sorted(REPORT_RESULTS.items())))
                  + "; they are references, not measurements of this project.</p>"]
        if not table_first:
            parts.append(numbers)
        focus = focus_run(counting)
        if focus is not None:
            parts.append(f"<h2 class='section-inside'>Inside "
                         f"{_esc(model_title(focus.model_number))}</h2>"
                         f"<p class='muted'>run <code>{_esc(focus.run_id)}</code>, "
                         f"{_esc(dataset_label(focus))}</p>")
            if has_superclasses(focus.metrics):
                parts.append(figure(square_cells(confusion_figure(
                    confusion_matrix(focus.metrics, "superclass"),
                    superclass_names(focus.metrics), normalize=True,
                    selectable=False,
                    title="Superclass confusion (% of each true superclass)"))))
            extremes = weakest_and_strongest(focus.metrics, "f1", 10)
            parts.append(figure(extremes_figure(extremes, focus.run_id)))
            if extremes.message:
                parts.append(f"<p class='muted'>{_esc(extremes.message)}</p>")
    parts += ["<h2>All completed runs</h2>", _table(_runs_rows(records, counting)),
              "<p class='muted'>training (s): the fit as training recorded it; whole run "
              "(min): from the run's start to its end, data loading, feature pass, warm-up, "
              "search and evaluation included.</p>"]
    if counting:
        parts += ["<h2>Model cards</h2>",
                  "<p class='muted'>One card per counted run: what the model is, the data it "
                  "was trained and tested on, its numbers, its weakest classes, its limits, "
                  "its intended use and where it came from.</p>"]
        parts += [card_html(model_card(record)) for record in counting.values()]
    parts.append("<h2 class='new-page'>Configuration behind every number</h2>")
    for record in counting.values():
        parts += [f"<h3>{_esc(model_title(record.model_number) if record.model_number else '')}"
                  f" ({_esc(record.label_set)} labels) · run <code>{_esc(record.run_id)}</code>"
                  "</h3>", _settings_table(_configuration_rows(record))]
    return parts


def generated_stamp(generated_at: datetime | None = None) -> str:
    return (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")


def build_html_report(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord], *,
                      title: str = "CIFAR-100 model progression",
                      generated_at: datetime | None = None) -> str:
    """A single self-contained HTML file with the presentation's content.

    ``counting`` are the runs that count per model (``choose_counting_runs``); ``records``
    the runs to list in the metrics table.
    """
    import plotly.offline

    parts = report_sections(records, counting, title=title,
                            generated=generated_stamp(generated_at), figure=_figure_html)
    script = f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(title)}</title><style>{_CSS}</style>{script}</head>"
            f"<body>{''.join(parts)}</body></html>")


# The printed report: A4 landscape, so a 1000 px chart prints at its own size; figures,
# cards and table rows are never split across pages, and a heading stays with what follows.
PRINT_CSS = """
@page{size:A4 landscape;margin:11mm 12mm 13mm 12mm;
@bottom-right{content:counter(page) " / " counter(pages);font:8pt Helvetica,Arial,sans-serif;
color:#5f6b7a}}
body{max-width:none;margin:0;padding:0;font-size:10pt}h1{font-size:20pt;margin-top:0}
h2{margin-top:1rem;break-after:avoid}h3,h4{break-after:avoid}h4{margin:.5rem 0 .25rem}
.new-page,.section-progression,.section-inside{break-before:page}
.figure{break-inside:avoid;margin:.4rem 0}
.figure svg{max-width:100%;height:auto;max-height:158mm;display:block;margin:0 auto}
.model-card .muted{font-size:8pt}
.card,tr,.model-card li{break-inside:avoid}table{font-size:8pt}th,td{padding:.15rem .35rem}
.table-wrap{overflow:visible}.model-card{break-before:page}.model-card p{margin:.3rem 0}
.model-card ul{margin:0;padding-left:1.1rem}
.card-grid{grid-template-columns:repeat(3,1fr);gap:.4rem 1rem}
"""


def build_print_html(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord], *,
                     title: str, figure: Callable[[go.Figure], str],
                     generated_at: datetime | None = None) -> str:
    """The report as a page for printing: the same sections, figures drawn by ``figure``
    (static images: the page holds no script, so a print never waits for one)."""
    parts = report_sections(records, counting, title=title,
                            generated=generated_stamp(generated_at), figure=figure,
                            table_first=True)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(title)}</title><style>{_CSS}{PRINT_CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
