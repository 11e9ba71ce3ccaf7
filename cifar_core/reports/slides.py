"""The stakeholder report as a slide deck (``.pptx``, python-pptx's default template).

Slides: a title slide; the progression chart with the headline numbers; one slide per
counted model (its numbers, its weakest and strongest classes, what it changed against the
counted model before it); the superclass confusion matrix of the model the report looks
into; and the runs behind every number with the data's identity. Each number names its run.

Only the default template's standard layouts (Title Slide, Title Only), text boxes, pictures
and one plain table: what PowerPoint, LibreOffice Impress and Keynote all open alike. The
charts are PNG pictures drawn by the same Chromium as the PDF's (``cifar_core.reports.render``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from cifar_core.analysis.card import ModelCard, model_card
from cifar_core.analysis.classes import confusion_matrix, has_superclasses, superclass_names
from cifar_core.analysis.report import focus_run, headline_numbers, progression_steps
from cifar_core.analysis.runs import RunKey, dataset_label, model_title, progression_points
from cifar_core.charts.confusion import confusion_figure
from cifar_core.charts.progression import progression_figure
from cifar_core.charts.style import square_cells
from cifar_core.errors import CifarCoreError, RendererError
from cifar_core.reports.card import ece_text
from cifar_core.reports.render import figure_images, find_browser
from cifar_core.runs.store import RunRecord

TITLE_ONLY, TITLE_SLIDE = 5, 0  # layouts of python-pptx's default template
RUNS_PER_SLIDE = 10  # rows of the closing table before it continues on another slide
ROW_HEIGHT = 0.4  # inches: a table row with room for a second line
GREY = (0x5F, 0x6B, 0x7A)
# px the charts are laid out at (drawn at twice that): on a 9-inch picture their 13 px text
# reads as 10 pt
FIGURE_WIDTH = 880

ImageMaker = Callable[[Sequence], list[bytes]]  # figures -> PNG bytes, in order


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _pptx():
    try:
        import pptx
        import pptx.dml.color  # RGBColor: imported here, pptx does not import it itself
        from pptx.util import Inches, Pt
    except ImportError:
        raise RendererError("slides need the python-pptx package: pip install python-pptx") \
            from None
    return pptx, Inches, Pt


class _Deck:
    """A python-pptx presentation with the few shapes this deck uses."""

    def __init__(self):
        self.pptx, self.inches, self.pt = _pptx()
        self.prs = self.pptx.Presentation()
        self.width, self.height = self.prs.slide_width, self.prs.slide_height

    def slide(self, title: str, size: int = 28):
        slide = self.prs.slides.add_slide(self.prs.slide_layouts[TITLE_ONLY])
        slide.shapes.title.text = title
        for paragraph in slide.shapes.title.text_frame.paragraphs:
            for run in paragraph.runs:
                run.font.size = self.pt(size)
        return slide

    def text(self, slide, left: float, top: float, width: float, height: float,
             lines: Iterable[tuple[str, int, bool] | tuple[str, int, bool, bool]]):
        """A text box (inches) of ``(text, points, bold[, grey])`` paragraphs."""
        box = slide.shapes.add_textbox(*(self.inches(v) for v in (left, top, width, height)))
        frame = box.text_frame
        frame.word_wrap = True
        for index, (text, size, bold, *grey) in enumerate(lines):
            paragraph = frame.paragraphs[0] if index == 0 else frame.add_paragraph()
            run = paragraph.add_run()
            run.text = text
            run.font.size = self.pt(size)
            run.font.bold = bold
            if grey and grey[0]:
                run.font.color.rgb = self.pptx.dml.color.RGBColor(*GREY)
        return box

    def picture(self, slide, png: bytes, *, top: float, max_width: float, max_height: float):
        """A picture as large as fits ``max_width`` x ``max_height`` inches, centred."""
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            aspect = image.width / image.height
        width = min(max_width, max_height * aspect)
        left = (self.width - self.inches(width)) // 2
        return slide.shapes.add_picture(io.BytesIO(png), left, self.inches(top),
                                        width=self.inches(width))

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.prs.save(buffer)
        return buffer.getvalue()


def _title_slide(deck: _Deck, title: str, counting, generated: str) -> None:
    slide = deck.prs.slides.add_slide(deck.prs.slide_layouts[TITLE_SLIDE])
    slide.shapes.title.text = title
    for paragraph in slide.shapes.title.text_frame.paragraphs:
        for run in paragraph.runs:
            run.font.size = deck.pt(36)
    data = "; ".join(sorted({dataset_label(r) for r in counting.values()}))
    subtitle = slide.placeholders[1].text_frame
    subtitle.text = f"Data: {data}"
    for text in (f"{len(counting)} counted runs · generated {generated}",
                 "Every number names its run; the last slide lists them."):
        subtitle.add_paragraph().text = text
    for paragraph in subtitle.paragraphs:
        for run in paragraph.runs:
            run.font.size = deck.pt(16)


def _progression_slide(deck: _Deck, png: bytes, points) -> None:
    slide = deck.slide("Test accuracy by model")
    deck.picture(slide, png, top=1.35, max_width=9.2, max_height=4.55)
    lines = [(f"{n.label}: {_pct(n.value)} · {n.detail} · run {n.run_id}", 12, False)
             for n in headline_numbers(points)]
    lines.append(("Grey markers: the report's published CIFAR-100 results, references only.",
                  10, False, True))
    deck.text(slide, 0.5, 5.95, 9.0, 1.4, lines)


def _class_lines(title: str, scores) -> list[tuple]:
    lines = [(title, 14, True)]
    lines += [(f"{s.name}: {_pct(s.f1)} ({s.support} test images)", 12, False)
              for s in scores] or [("none", 12, False, True)]
    return lines


def _model_slide(deck: _Deck, step, card: ModelCard) -> None:
    record = step.record
    labels = " · superclass labels" if record.label_set == "coarse" else ""
    title = f"{card.title}{labels}"
    slide = deck.slide(title, size=26 if len(title) <= 36 else 21)  # one line, not two
    numbers = [(f"Top-1 {_pct(card.top1)}", 24, True),
               (f"Top-5 {_pct(card.top5)} · superclass {_pct(card.superclass)}", 14, False),
               (f"Calibration error (ECE) {ece_text(card)}", 12, False),
               (f"run {record.run_id} · {card.num_test} test images", 11, False, True),
               ("", 8, False)]
    if step.previous is None:
        numbers.append(("The first counted model of the progression.", 13, True))
    else:
        before = model_title(step.previous.model_number)
        numbers.append((f"Against {before}: {step.gain:+.1f} points of top-1", 13, True))
        numbers += [(f"• {change}", 11, False) for change in step.changes]
        numbers.append((f"(previous run {step.previous.run_id})", 10, False, True))
    deck.text(slide, 0.45, 1.45, 4.7, 5.6, numbers)
    classes = [*_class_lines("Weakest classes (F1)", card.weakest), ("", 8, False),
               *_class_lines("Strongest classes (F1)", card.strongest)]
    if card.ranking_note:
        classes.append((card.ranking_note, 10, False, True))
    deck.text(slide, 5.3, 1.45, 4.3, 5.6, classes)


def _matrix_slide(deck: _Deck, png: bytes, focus: RunRecord) -> None:
    slide = deck.slide("Superclass confusion", size=28)
    deck.picture(slide, png, top=1.3, max_width=9.0, max_height=5.3)
    deck.text(slide, 0.5, 6.65, 9.0, 0.7,
              [(f"{model_title(focus.model_number)}: % of each true superclass's test images "
                f"· run {focus.run_id} · {dataset_label(focus)}", 11, False, True)])


def _runs_slides(deck: _Deck, counting: Mapping[RunKey, RunRecord]) -> None:
    records = [r for _, r in sorted(counting.items(),
                                    key=lambda item: (item[0][0], item[0][1] != "fine"))]
    header = ("run id", "model", "labels", "profile", "seed", "top-1", "top-5",
              "superclass", "code")
    widths = (2.3, 0.66, 0.74, 0.72, 0.56, 0.68, 0.68, 1.0, 1.66)  # inches, 9.0 in all
    chunks = [records[i:i + RUNS_PER_SLIDE] for i in range(0, len(records), RUNS_PER_SLIDE)]
    for number, chunk in enumerate(chunks):
        title = "The runs behind every number" + (" (continued)" if number else "")
        slide = deck.slide(title, size=28)
        shape = slide.shapes.add_table(len(chunk) + 1, len(header), deck.inches(0.5),
                                       deck.inches(1.45), deck.inches(sum(widths)),
                                       deck.inches(ROW_HEIGHT * (len(chunk) + 1)))
        table = shape.table
        for column, width in enumerate(widths):
            table.columns[column].width = deck.inches(width)
        rows = [header] + [_run_row(record) for record in chunk]
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                cell = table.cell(r, c)
                cell.text = str(value)
                for paragraph in cell.text_frame.paragraphs:
                    for run in paragraph.runs:
                        run.font.size = deck.pt(9)
                        run.font.bold = r == 0
        data = []
        for key in sorted({_data_identity(r) for r in counting.values()}):
            data.append((key, 11, False))
        for row in table.rows:
            row.height = deck.inches(ROW_HEIGHT)
        deck.text(slide, 0.5, 1.6 + ROW_HEIGHT * (len(chunk) + 1), 9.0, 1.4,
                  [("Data", 13, True), *data,
                   ("Each run's whole configuration is in the PDF and HTML reports and in "
                    "its model card (cifar-core card --run RUN).", 10, False, True)])


def _run_row(record: RunRecord) -> tuple:
    config = record.config or {}
    metrics = record.metrics or {}
    git = (config.get("environment") or {}).get("git") or {}
    code = str(git.get("commit") or "unknown")[:12] + (" (changed)" if git.get("dirty") else "")
    return (record.run_id, record.model_number, record.label_set, config.get("profile") or "-",
            config.get("seed"), _pct(metrics.get("test_top1")), _pct(metrics.get("test_top5")),
            _pct(metrics.get("test_superclass_top1")), code)


def _data_identity(record: RunRecord) -> str:
    dataset = (record.config or {}).get("dataset") or {}
    return (f"{dataset_label(record).split(' (')[0]} ({dataset.get('name')}): sha256 "
            f"{dataset.get('sha256')}, {dataset.get('num_train')} training / "
            f"{dataset.get('num_test')} test images")


def build_slides(records: Iterable[RunRecord], counting: Mapping[RunKey, RunRecord], *,
                 title: str = "CIFAR-100 model progression", browser: str | None = None,
                 images: ImageMaker | None = None,
                 generated_at: datetime | None = None) -> bytes:
    """The deck as ``.pptx`` bytes.

    ``images`` draws the charts as PNG (default: kaleido with ``browser``, see
    ``find_browser``); a ``RendererError`` saying what to install when nothing can draw.
    """
    if not counting:
        raise CifarCoreError("no completed runs to report on: train a model first "
                             "(cifar-core train --model 1, or the Train page)")
    deck = _Deck()  # python-pptx missing: said before a browser starts
    if images is None:
        path = find_browser(browser)

        def images(figures):
            return figure_images(figures, "png", browser=path, width=FIGURE_WIDTH)

    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    points = progression_points(counting)
    focus = focus_run(counting)
    figures = [progression_figure(points, title=None)]  # the slide's title says it
    with_matrix = focus is not None and has_superclasses(focus.metrics)
    if with_matrix:
        figures.append(square_cells(confusion_figure(
            confusion_matrix(focus.metrics, "superclass"), superclass_names(focus.metrics),
            normalize=True, selectable=False, title=None)))
    drawn = images(figures)
    deck.prs.core_properties.title = title
    deck.prs.core_properties.author = "cifar-core"
    _title_slide(deck, title, counting, generated)
    _progression_slide(deck, drawn[0], points)
    for step in progression_steps(counting):
        _model_slide(deck, step, model_card(step.record))
    if with_matrix:
        _matrix_slide(deck, drawn[1], focus)
    _runs_slides(deck, counting)
    return deck.save()
