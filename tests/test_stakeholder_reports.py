"""The reports for stakeholders: the PDF, the slide deck and the model cards, from the
library, the command line and the Present page, on copies of the committed fixture runs.

Every number is checked against the run's own files on disk (``metrics.json``,
``config.json``, ``predictions.npz``), read here with ``json`` and NumPy, never against what
the code under test computed. Tests that start a browser are ``slow`` (and skipped with the
reason where Chromium is missing); the rest need no browser and take seconds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageStat

from cifar_core.analysis.names import readable
from cifar_core.cli import main
from cifar_core.errors import ConfigError, RendererError
from cifar_core.reports import outputs, render
from cifar_core.reports.card import run_card_markdown
from cifar_core.reports.slides import build_slides
from cifar_core.runs.store import list_runs, load_run

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120  # AppTest's first run imports TensorFlow
CHROMIUM = os.environ.get("CIFAR_CORE_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"


@pytest.fixture
def runs_root(tmp_path, fixture_runs) -> Path:
    """A private artifacts folder with a copy of the fixture runs (free to change)."""
    shutil.copytree(fixture_runs / "runs", tmp_path / "artifacts" / "runs")
    return tmp_path / "artifacts"


def _files(run_dir: Path) -> dict:
    return {name: json.loads((run_dir / f"{name}.json").read_text(encoding="utf-8"))
            for name in ("run", "config", "metrics")}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _all_files(root: Path) -> dict[str, dict]:
    return {d.name: _files(d) for d in sorted((root / "runs").iterdir())}


def _ece_from_disk(run_dir: Path, bins: int = 10) -> float:
    """The expected calibration error from predictions.npz, computed here: the top-1
    probability in 10 equal-width bins (an inner edge belongs to the bin below)."""
    with np.load(run_dir / "predictions.npz") as data:
        confidence = data["top_probs"][:, 0].astype(np.float64)
        correct = data["y_pred"] == data["y_true"]
    total = 0.0
    for low, high in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:],
                         strict=True):
        inside = (confidence > low) & (confidence <= high) if low > 0 else confidence <= high
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return total / len(confidence)


def _weakest_from_disk(metrics: dict, count: int = 5) -> list[tuple[str, float]]:
    rows = [r for r in metrics["per_class"] if r["support"] > 0]
    best = max(r["f1"] for r in rows)
    rows = sorted((r for r in rows if r["f1"] < best), key=lambda r: (r["f1"], r["class"]))
    return [(readable(r["class"]), r["f1"]) for r in rows[:count]]


# --- model cards -----------------------------------------------------------------------


def test_model_card_numbers_and_data_hash_are_the_run_files(runs_root):
    for run_id, files in _all_files(runs_root).items():
        run_dir = runs_root / "runs" / run_id
        card = run_card_markdown(load_run(run_dir))
        metrics, config = files["metrics"], files["config"]
        assert f"Run `{run_id}`" in card
        assert f"| top-1 accuracy | {_pct(metrics['test_top1'])} |" in card
        assert f"| top-5 accuracy | {_pct(metrics['test_top5'])} |" in card
        assert f"| superclass accuracy | {_pct(metrics['test_superclass_top1'])} (" in card
        assert f"| SHA-256 of pixels and labels | {config['dataset']['sha256']} |" in card
        assert f"| test images | {config['dataset']['num_test']} |" in card
        assert f"| training images | {config['dataset']['num_train']} (" in card
        assert f"| seed | {config['seed']} |" in card
        assert f"| run id | {run_id} |" in card
        ece = _ece_from_disk(run_dir)
        assert f"| expected calibration error | {ece:.3f} ({100 * ece:.1f} points) |" in card
        weakest = card.split("## Weakest classes")[1].split("## Strongest")[0]
        listed = [line.split(" | ")[:2] for line in weakest.splitlines()
                  if line.startswith("| ") and not line.startswith("| class |")]
        assert [(name.lstrip("| "), f1) for name, f1 in listed] == \
            [(name, _pct(f1)) for name, f1 in _weakest_from_disk(metrics)]
        assert "## Known limitations" in card and "## Intended use" in card
        assert f"Trained with the quick profile ({config['hyperparameters']['epochs']} epoch" \
            in card
        assert "not CIFAR-100" not in card  # the fixture runs are CIFAR-100's format


def test_model_card_names_other_data_and_a_missing_ece(runs_root):
    run_dir = next((runs_root / "runs").glob("*-m5-fine"))
    config = json.loads((run_dir / "config.json").read_text())
    config["dataset"]["name"] = "cifar10-images"
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "predictions.npz").unlink()
    card = run_card_markdown(load_run(run_dir))
    assert "Its figures are on cifar10-images images, not CIFAR-100" in card
    assert "| expected calibration error | no expected calibration error:" in card
    assert "predictions.npz: missing" in card


def test_card_command_writes_the_card_and_refuses_an_unfinished_run(runs_root, tmp_path,
                                                                     capsys):
    run_dir = next((runs_root / "runs").glob("*-m1-fine"))
    out = tmp_path / "card.md"
    assert main(["card", "--run", run_dir.name, "--artifacts", str(runs_root),
                 "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    top1 = json.loads((run_dir / "metrics.json").read_text())["test_top1"]
    assert text.startswith("# Model card: Model 1: Simple CNN (fine labels)")
    assert f"| top-1 accuracy | {_pct(top1)} |" in text
    capsys.readouterr()
    assert main(["card", "--run", run_dir.name, "--artifacts", str(runs_root),
                 "--out", "-"]) == 0
    assert f"| top-1 accuracy | {_pct(top1)} |" in capsys.readouterr().out
    run = json.loads((run_dir / "run.json").read_text())
    run["status"] = "failed"
    (run_dir / "run.json").write_text(json.dumps(run))
    assert main(["card", "--run", run_dir.name, "--artifacts", str(runs_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a model card needs a completed run" in err


def test_html_report_holds_a_model_card_per_counted_run(runs_root, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--format", "html", "--runs-dir", str(runs_root / "runs"),
                 "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<h2>Model cards</h2>" in page
    for run_id, files in _all_files(runs_root).items():  # each (model, labels) counts
        assert f"run <code>{run_id}</code></h3>" in page.split("<h2>Model cards</h2>")[1]
        assert files["config"]["dataset"]["sha256"] in page


# --- refusals ------------------------------------------------------------------------------


def test_no_browser_found_says_which_package_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR_CORE_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(RendererError) as caught:
        render.find_browser()
    message = str(caught.value)
    assert "\n" not in message and "apt-get install chromium" in message
    assert "--browser" in message and "CIFAR_CORE_CHROMIUM" in message
    with pytest.raises(RendererError, match=r"no browser at /no/such/chromium \(from --browser"):
        render.find_browser("/no/such/chromium")
    monkeypatch.setenv("CIFAR_CORE_CHROMIUM", "/no/such/chrome")
    with pytest.raises(RendererError, match=r"from CIFAR_CORE_CHROMIUM\).*apt-get install"):
        render.find_browser()


def test_report_command_refusals_are_one_line(runs_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIFAR_CORE_CHROMIUM", str(tmp_path / "missing-chromium"))
    for fmt in ("pdf", "pptx"):
        assert main(["report", "--format", fmt, "--runs-dir", str(runs_root),
                     "--out", str(tmp_path / f"r.{fmt}")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: no browser at") and "apt-get install chromium" in err
        assert "\n" not in err and not (tmp_path / f"r.{fmt}").exists()
    assert main(["report", "--format", "pdf", "--runs-dir", str(tmp_path / "empty")]) == 2
    assert "error: no completed runs under" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["report", "--format", "docx"])
    assert caught.value.code == 2
    assert "invalid choice: 'docx'" in capsys.readouterr().err
    records = list_runs(runs_root)
    with pytest.raises(ConfigError, match="unknown report format 'docx': choose one of html, "
                                          "pdf, pptx"):
        outputs.build_report("docx", records, {})


# --- slides (charts drawn by a stand-in: structure and numbers) ----------------------------


def _png(width: int = 1760, height: int = 880) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line([(0, height), (width, 0)], fill="navy", width=9)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _deck(data: bytes):
    from pptx import Presentation

    return Presentation(io.BytesIO(data))


def _slide_text(slide) -> str:
    parts = []
    for shape in slide.shapes:
        if shape.has_text_frame:
            parts.append(shape.text_frame.text)
        if shape.has_table:
            parts += [cell.text for row in shape.table.rows for cell in row.cells]
    return "\n".join(parts)


def _check_deck(data: bytes, root: Path) -> list:
    """Slide count, titles and numbers against the runs' files; returns the pictures."""
    files = _all_files(root)
    deck = _deck(data)
    slides = list(deck.slides)
    # title, progression, one a counted model (3), superclass matrix, runs
    assert len(slides) == 2 + len(files) + 2
    titles = [s.shapes.title.text for s in slides]
    assert titles[0] == "CIFAR-100: from a one-layer CNN to transfer learning"
    assert titles[1] == "Test accuracy by model"
    assert titles[2:5] == ["Model 1: Simple CNN", "Model 1: Simple CNN · superclass labels",
                           "Model 5: + flip augmentation"]
    assert titles[5] == "Superclass confusion"
    assert "Model 1: Simple CNN: % of each true superclass" in _slide_text(slides[5])
    assert titles[6] == "The runs behind every number"
    slide_of = {(1, "fine"): 2, (1, "coarse"): 3, (5, "fine"): 4}
    top1 = {}
    for run_id, f in files.items():
        metrics = f["metrics"]
        kind = (f["config"]["model"]["number"], f["config"]["labels"])
        top1[kind] = metrics["test_top1"]
        text = _slide_text(slides[slide_of[kind]])
        assert f"Top-1 {_pct(metrics['test_top1'])}" in text
        assert f"Top-5 {_pct(metrics['test_top5'])} · superclass " \
               f"{_pct(metrics['test_superclass_top1'])}" in text
        assert f"run {run_id}" in text
        ece = _ece_from_disk(root / "runs" / run_id)
        assert f"Calibration error (ECE) {ece:.3f}" in text
        weakest = _weakest_from_disk(metrics)
        assert f"{weakest[0][0]}: {_pct(weakest[0][1])}" in text
        closing = _slide_text(slides[6])
        assert run_id in closing and _pct(metrics["test_top1"]) in closing
        assert f["config"]["dataset"]["sha256"] in closing
    m5 = _slide_text(slides[4])
    gain = 100 * (top1[(5, "fine")] - top1[(1, "fine")])
    assert f"Against Model 1: Simple CNN: {gain:+.1f} points of top-1" in m5
    assert "Model 2: a hidden Dense layer of 128 units, ReLU" in m5  # the models in between
    assert "first counted model" in _slide_text(slides[2])
    pictures = {i: [s for s in slide.shapes if s.shape_type == 13]  # MSO_SHAPE_TYPE.PICTURE
                for i, slide in enumerate(slides)}
    assert {i for i, p in pictures.items() if p} == {1, 5}  # the progression and the matrix
    for shape in (*pictures[1], *pictures[5]):
        assert shape.left >= 0 and shape.left + shape.width <= deck.slide_width
        assert shape.top >= 0 and shape.top + shape.height <= deck.slide_height
    return [pictures[1][0], pictures[5][0]]


def test_slides_hold_the_runs_numbers_and_a_picture_per_chart(runs_root):
    records = list_runs(runs_root)
    _, _, counting = outputs.report_scope(records)
    asked = []

    def stand_in(figures):
        asked.append([f.layout.title.text for f in figures])
        return [_png() for _ in figures]

    data = build_slides(records, counting, title=outputs.report_title(counting),
                        images=stand_in)
    assert len(asked) == 1 and len(asked[0]) == 2  # both charts drawn in one session
    for picture in _check_deck(data, runs_root):
        assert picture.image.blob == _png()


# --- the Present page ----------------------------------------------------------------------


def _present(root: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["artifacts_dir"] = str(root)
    at.run()
    at.switch_page("pages/present.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _downloads(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_present_page_draws_pdf_and_slides_only_when_asked(runs_root, monkeypatch):
    calls = []

    def fake_build(fmt, records, counting, *, title=None, **_):
        calls.append((fmt, sorted(r.run_id for r in counting.values()), title))
        return b"%PDF-1.7 stand-in" if fmt == "pdf" else b"PK stand-in"

    monkeypatch.setattr(outputs, "build_report", fake_build)
    at = _present(runs_root)
    assert not at.error
    downloads = _downloads(at)
    assert downloads[0] == "Download the report (HTML)"
    assert "Model card of the best model (Markdown)" in downloads
    assert "Download the report (PDF)" not in downloads and calls == []  # not at render
    assert at.button(key="present_prepare_pdf").label == "Prepare the report (PDF)"
    assert at.button(key="present_prepare_pptx").label == "Prepare the slides (PPTX)"
    at.button(key="present_prepare_pptx").click().run()
    assert not at.exception and not at.error
    runs = sorted(_all_files(runs_root))
    assert calls == [("pptx", runs, "CIFAR-100: from a one-layer CNN to transfer learning")]
    assert "Download the slides (PPTX)" in _downloads(at)
    assert "Download the report (PDF)" not in _downloads(at)
    at.run()  # a rerun keeps the deck: no second drawing
    assert len(calls) == 1 and "Download the slides (PPTX)" in _downloads(at)


def test_classes_page_offers_the_model_card_of_the_sidebars_run(runs_root):
    at = _present(runs_root)
    at.switch_page("pages/classes.py").run()
    for run_id in _all_files(runs_root):
        at.sidebar.selectbox(key="run_id").set_value(run_id).run()
        assert not at.exception, [e.value for e in at.exception]
        [card] = [b for b in at.get("download_button") if b.proto.label == "Model card (Markdown)"]
        assert run_id in card.proto.help  # the sidebar's run, not another one


def test_present_page_without_a_browser_says_what_to_install(runs_root, monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_CHROMIUM", "/no/such/chromium")
    at = _present(runs_root)
    at.button(key="present_prepare_pdf").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Preparing the PDF: no browser at /no/such/chromium")
    assert "apt-get install chromium" in error
    assert "Download the report (PDF)" not in _downloads(at)


# --- with a real browser -------------------------------------------------------------------


def _need_chromium():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install "
                    "chromium) or set CIFAR_CORE_CHROMIUM")


@pytest.mark.slow
def test_pdf_report_holds_the_runs_numbers_and_drawn_charts(runs_root, tmp_path):
    _need_chromium()
    pypdf = pytest.importorskip("pypdf")
    out = tmp_path / "report.pdf"
    assert main(["report", "--format", "pdf", "--runs-dir", str(runs_root), "--out", str(out),
                 "--browser", CHROMIUM]) == 0
    reader = pypdf.PdfReader(out)
    pages = []
    for number, page in enumerate(reader.pages, 1):  # each page opens with its "N / M"
        counter, _, body = page.extract_text().partition("\n")
        assert counter == f"{number} / {len(reader.pages)}"
        pages.append(body)
    files = _all_files(runs_root)
    # summary, progression, superclass matrix, classes, all runs, a card a run, settings
    assert 5 + len(files) <= len(pages) <= 5 + 2 * len(files) + 2
    text = "\n".join(pages)
    fine = [f["metrics"] for f in files.values() if f["metrics"]["label_set"] == "fine"]
    best = max(fine, key=lambda m: m["test_top1"])
    assert pages[0].startswith("CIFAR-100: from a one-layer CNN to transfer learning")
    assert f"Best fine top-1\n{_pct(best['test_top1'])}" in pages[0]
    assert f"Best model's top-5\n{_pct(best['test_top5'])}" in pages[0]
    best_super = max(f["metrics"]["test_superclass_top1"] for f in files.values())
    assert f"Best superclass accuracy\n{_pct(best_super)}" in pages[0]
    for run_id, f in files.items():
        assert run_id in pages[0]  # the summary's table names every counted run
        # the full hash, wrapped over lines in the card's narrow column
        assert f["config"]["dataset"]["sha256"] in "".join(text.split())
        card = next(p for p in pages if p.startswith("Model card:") and run_id in p[:200])
        assert f"top-1 accuracy {_pct(f['metrics']['test_top1'])}" in card
    # the charts are vector drawings: their own text is in the PDF, not a blank box
    progression = next(p for p in pages if p.startswith("Progression"))
    assert "test accuracy (%)" in progression and "Model 8" in progression
    assert "report 59.5%" in progression and _pct(best["test_top1"]) in progression
    matrix = next(p for p in pages if p.startswith("Inside Model"))
    assert "Superclass confusion" in matrix and "predicted" in matrix and "super 19" in matrix


@pytest.mark.slow
def test_slides_with_charts_drawn_by_chromium(runs_root, tmp_path):
    _need_chromium()
    out = tmp_path / "deck.pptx"
    assert main(["report", "--format", "pptx", "--runs-dir", str(runs_root), "--out", str(out),
                 "--browser", CHROMIUM]) == 0
    for picture in _check_deck(out.read_bytes(), runs_root):
        blob = picture.image.blob
        assert len(blob) > 30_000
        with Image.open(io.BytesIO(blob)) as image:
            assert image.format == "PNG" and image.width >= 1500  # drawn at twice its size
            grey = image.convert("L")
            assert ImageStat.Stat(grey).stddev[0] > 10  # drawn, not a blank box
            assert len(grey.getcolors(maxcolors=1 << 16) or []) > 50


@pytest.mark.slow
def test_a_browser_that_fails_is_one_clear_error(tmp_path):
    failing = tmp_path / "chromium"
    failing.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(RendererError, match=r"printed no PDF \(exit 3: cannot open display\)"):
        render.print_to_pdf("<p>hi</p>", browser=str(failing))
