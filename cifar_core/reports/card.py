"""Model cards written out: Markdown (``cifar-core card``, the Present page's download) and a
section of the HTML and PDF reports.

The card's content is ``cifar_core.analysis.card.model_card``; this module only lays it out.
Every number on a card names its run, and the data it was measured on is named by its hash.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime

from cifar_core.analysis.card import ModelCard, model_card
from cifar_core.runs.store import RunRecord


def _pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "not recorded"


def ece_text(card: ModelCard) -> str:
    """``"0.061 (6.1 points)"``, or why the card has none."""
    if card.ece is None:
        return card.ece_note or "not available"
    return f"{card.ece:.3f} ({100 * card.ece:.1f} points)"


def superclass_text(card: ModelCard) -> str:
    if card.superclass is None:
        return "not recorded (no superclasses in the data)"
    how = "trained on superclasses" if card.labels == "coarse" else \
        "fine predictions mapped to their superclass"
    return f"{_pct(card.superclass)} ({how})"


def data_rows(card: ModelCard) -> list[tuple[str, str]]:
    data = card.data
    train = f"{data.get('num_train')}"
    if data.get("trained_on") is not None:
        train += (f" ({data['trained_on']} trained on, {data.get('validation')} held out for "
                  "validation)")
    classes = f"{data.get('num_classes')}"
    if data.get("num_superclasses"):
        classes += f" in {data['num_superclasses']} superclasses"
    return [("data set", f"{data.get('display_name')} ({data.get('name')})"),
            ("SHA-256 of pixels and labels", str(data.get("sha256") or "not recorded")),
            ("source", str(data.get("source_file") or "not recorded")),
            ("training images", train), ("test images", str(data.get("num_test"))),
            ("classes", classes)]


def metric_rows(card: ModelCard) -> list[tuple[str, str]]:
    return [("top-1 accuracy", _pct(card.top1)), ("top-5 accuracy", _pct(card.top5)),
            ("superclass accuracy", superclass_text(card)),
            ("expected calibration error", ece_text(card))]


def provenance_rows(card: ModelCard) -> list[tuple[str, str]]:
    p = card.provenance

    def known(value) -> str:
        return "not recorded" if value in (None, "") else str(value)

    code = known(p.get("code_commit"))
    if p.get("uncommitted_changes"):
        code += " (uncommitted changes)"
    machine = ", ".join(str(v) for v in (p.get("host"), p.get("platform"), p.get("cpu"))
                        if v) or "not recorded"
    if p.get("cpu_count"):
        machine += f" ({p['cpu_count']} cores)"
    return [("run id", card.run_id), ("seed", known(p.get("seed"))), ("code version", code),
            ("cifar-core / TensorFlow / Keras / Python",
             " / ".join(known(p.get(k)) for k in ("cifar_core", "tensorflow", "keras",
                                                   "python"))),
            ("machine", machine), ("profile", known(p.get("profile"))),
            ("trained", f"{known(p.get('created_at'))} to {known(p.get('ended_at'))}")]


def heading(card: ModelCard) -> str:
    return f"{card.title} ({card.labels} labels)"


# --- Markdown ------------------------------------------------------------------------------

# What a Markdown file would read as formatting inside running text or a table cell (the
# dashboard's ``literal_markdown`` also escapes Streamlit's ":emoji:" colons, which a file
# does not need).
_MARKDOWN_SPECIAL = "\\`*_[]<>|"


def literal_markdown(text: object) -> str:
    """``text`` escaped so that a Markdown viewer shows it as written."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def _md_table(header: tuple[str, ...], rows: Iterable[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(literal_markdown(cell) for cell in row) + " |" for row in rows]
    return lines


def _md_classes(title: str, scores, card: ModelCard) -> list[str]:
    lines = [f"## {title} (F1 on the test set)", ""]
    if not scores:
        return [*lines, literal_markdown(card.ranking_note or "none"), ""]
    return [*lines, *_md_table(("class", "F1", "test images"),
                               ((s.name, _pct(s.f1), s.support) for s in scores)), ""]


def card_markdown(card: ModelCard, generated_at: datetime | None = None) -> str:
    """The card as a Markdown document."""
    generated = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    lines = [f"# Model card: {literal_markdown(heading(card))}", "",
             f"Run `{card.run_id}`; card generated {generated}. Every number below is this "
             "run's, measured on the data named under *Data*.", "",
             "## What it is", "", literal_markdown(card.description), ""]
    if card.change:
        lines += [f"Its step in the progression: {literal_markdown(card.change)}.", ""]
    lines += [literal_markdown(card.training), "",
              "## Data", "", *_md_table(("", ""), data_rows(card)), "",
              f"## Metrics (test set, {card.num_test} images, run `{card.run_id}`)", "",
              *_md_table(("metric", "value"), metric_rows(card)), ""]
    lines += _md_classes("Weakest classes", card.weakest, card)
    lines += _md_classes("Strongest classes", card.strongest, card)
    if card.ranking_note and (card.weakest or card.strongest):
        lines += [literal_markdown(card.ranking_note), ""]
    lines += ["## Known limitations", "", *[f"- {literal_markdown(x)}" for x in card.limitations],
              "", "## Intended use", "", *[f"- {literal_markdown(x)}" for x in card.intended_use],
              "", "## Provenance", "", *_md_table(("", ""), provenance_rows(card)), ""]
    return "\n".join(lines)


def run_card_markdown(record: RunRecord, generated_at: datetime | None = None) -> str:
    """The Markdown card of a completed run (``CifarCoreError`` for any other)."""
    return card_markdown(model_card(record), generated_at)


# --- HTML (a section of the reports) ----------------------------------------------------


def _esc(value) -> str:
    return html.escape("-" if value is None else str(value))


def _html_pairs(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<div class='table-wrap'><table class='settings'><tbody>{body}</tbody></table></div>"


def _html_classes(scores) -> str:
    if not scores:
        return "<p class='muted'>none</p>"
    body = "".join(f"<tr><td>{_esc(s.name)}</td><td>{_pct(s.f1)}</td><td>{s.support}</td></tr>"
                   for s in scores)
    return ("<div class='table-wrap'><table><thead><tr><th>class</th><th>F1</th>"
            f"<th>test images</th></tr></thead><tbody>{body}</tbody></table></div>")


def card_html(card: ModelCard) -> str:
    """The card as an HTML ``<section>`` for the reports (their CSS classes)."""
    parts = [f"<section class='model-card'><h3>Model card: {_esc(heading(card))} · run "
             f"<code>{_esc(card.run_id)}</code></h3>",
             f"<p>{_esc(card.description)}</p>"]
    if card.change:
        parts.append(f"<p>Its step in the progression: {_esc(card.change)}.</p>")
    note = f"<p class='muted'>{_esc(card.ranking_note)}</p>" if card.ranking_note else ""
    # A grid of blocks (three columns when printed) so that one card fits one page.
    blocks = [
        ("Data", _html_pairs(data_rows(card))),
        (f"Metrics (test set, {_esc(card.num_test)} images)", _html_pairs(metric_rows(card))),
        ("Provenance", _html_pairs(provenance_rows(card))),
        ("Weakest classes (F1)", _html_classes(card.weakest)),
        ("Strongest classes (F1)", _html_classes(card.strongest) + note),
        ("Intended use", "<ul>" + "".join(f"<li>{_esc(x)}</li>" for x in card.intended_use)
         + "</ul>")]
    parts += [f"<p>{_esc(card.training)}</p>", "<div class='card-grid'>",
              *[f"<div><h4>{name}</h4>{body}</div>" for name, body in blocks], "</div>",
              "<h4>Known limitations</h4><ul>",
              *[f"<li>{_esc(x)}</li>" for x in card.limitations], "</ul></section>"]
    return "".join(parts)
