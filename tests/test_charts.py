"""Figure builders of cifar_core.charts, on the fixture runs' real metrics."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from cifar_core.analysis import classes as ca
from cifar_core.analysis import images as ia
from cifar_core.analysis import runs as ra
from cifar_core.analysis import trials as ta
from cifar_core.analysis.names import readable
from cifar_core.charts.augmentation import augmentation_figure
from cifar_core.charts.classes import (
    class_difference_figure,
    confused_pairs_figure,
    extremes_figure,
)
from cifar_core.charts.confusion import confusion_figure, selected_cell
from cifar_core.charts.prediction import saliency_figure, top_classes_figure
from cifar_core.charts.progression import (
    LABEL_ROOM,
    REPORT_FINE_NAME,
    REPORT_SUPER_NAME,
    progression_figure,
)
from cifar_core.charts.style import GOOD
from cifar_core.charts.tuning import trials_parallel_figure
from cifar_core.models.specs import REPORT_RESULTS, SPECS
from cifar_core.runs.store import list_runs


@pytest.fixture(scope="module")
def records(fixture_runs):
    return list_runs(fixture_runs)


@pytest.fixture(scope="module")
def fine1(records):
    return next(r for r in records if r.model_number == 1 and r.label_set == "fine")


@pytest.fixture(scope="module")
def fine5(records):
    return next(r for r in records if r.model_number == 5 and r.label_set == "fine")


def _trace(fig: go.Figure, name: str):
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def test_progression_plots_counted_runs_and_labelled_report_markers(records):
    counting = ra.choose_counting_runs(records)
    points = ra.progression_points(counting)
    fig = progression_figure(points)
    fine = _trace(fig, "Fine top-1")
    fine_runs = sorted((r for r in counting.values() if r.label_set == "fine"),
                       key=lambda r: r.model_number)
    assert list(fine.x) == [r.model_number for r in fine_runs] == [1, 5]
    assert list(fine.y) == pytest.approx([100 * r.metrics["test_top1"] for r in fine_runs])
    assert [c[0] for c in fine.customdata] == [r.run_id for r in fine_runs]
    mapped = _trace(fig, "Superclass accuracy (fine runs)")
    assert list(mapped.y) == pytest.approx([100 * r.metrics["test_superclass_top1"]
                                            for r in fine_runs])
    coarse = _trace(fig, "Superclass top-1 (trained on superclasses)")
    coarse_run = counting[(1, "coarse")]
    assert list(coarse.x) == [1] and coarse.y[0] == pytest.approx(
        100 * coarse_run.metrics["test_top1"])
    for name, key in ((REPORT_FINE_NAME, "fine"), (REPORT_SUPER_NAME, "superclass")):
        reference = _trace(fig, name)
        assert "Report (CIFAR-100)" in name
        assert list(reference.x) == [1, 7]
        assert list(reference.y) == [REPORT_RESULTS[1][key], REPORT_RESULTS[7][key]]
        assert all(text.startswith("report ") for text in reference.text)
    assert list(fig.layout.xaxis.tickvals) == sorted(SPECS)


def _point(model, top1, superclass=None, labels="fine"):
    return ra.ProgressionPoint(model=model, labels=labels, run_id=f"r{model}{labels}", top1=top1,
                               top5=None, superclass=superclass, profile="seed", dataset="d")


def test_progression_leaves_room_for_labels_near_100_percent():
    points = [_point(1, 0.55, 0.75), _point(8, 0.97, 0.99), _point(1, 0.995, labels="coarse")]
    fig = progression_figure(points)
    low, high = fig.layout.yaxis.range
    labelled = [y for t in fig.data if "text" in t.mode and t.name.startswith(("Fine", "Super"))
                for y in t.y]
    assert high >= max(labelled) + LABEL_ROOM  # the label above the highest value fits
    assert max(fig.layout.yaxis.tickvals) == 100  # no "110%" tick
    assert all(t.cliponaxis is False for t in fig.data)  # markers at the edge drawn whole
    assert low == 0


def test_progression_labels_move_below_a_marker_just_above_them():
    fig = progression_figure([_point(1, 0.30, 0.60), _point(8, 0.883, 0.92)], reference={})
    fine = _trace(fig, "Fine top-1")
    # model 1: the superclass marker is far above; model 8: it is 3.7 points above
    assert list(fine.textposition) == ["top center", "bottom center"]
    near_zero = progression_figure([_point(5, 0.015, 0.045)], reference={})
    position = _trace(near_zero, "Fine top-1").textposition[0]
    # under its marker, not beside it where the line would cross it; the axis makes room
    assert position == "bottom center"
    assert near_zero.layout.yaxis.range[0] <= 1.5 - LABEL_ROOM
    assert min(near_zero.layout.yaxis.tickvals) == 0  # no "-10%" tick
    # a marker just above (superclass) and one just below (the report's): beside it
    boxed_in = progression_figure([_point(7, 0.60, 0.64)], reference={7: {"fine": 57.0}})
    assert _trace(boxed_in, "Fine top-1").textposition[0] == "middle left"


def test_progression_shows_later_models_and_copes_with_no_runs():
    point = ra.ProgressionPoint(model=9, labels="fine", run_id="r9", top1=0.5, top5=0.8,
                                superclass=None, profile="seed", dataset="d")
    fig = progression_figure([point], reference={})
    assert list(fig.layout.xaxis.tickvals) == [*sorted(SPECS), 9]
    assert [t.name for t in fig.data] == ["Fine top-1"]
    empty = progression_figure([])
    assert {t.name for t in empty.data} == {REPORT_FINE_NAME, REPORT_SUPER_NAME}


def test_extremes_figure_shows_both_ends_in_percent(fine5):
    extremes = ca.weakest_and_strongest(fine5.metrics, "f1", 6)
    fig = extremes_figure(extremes, fine5.run_id)
    strong, weak = _trace(fig, "strongest"), _trace(fig, "weakest")
    assert sorted(weak.y) == sorted(c.replace("_", " ") for c in extremes.weakest["class"])
    assert sorted(strong.x) == pytest.approx(sorted(100 * extremes.strongest["f1"]))
    assert not any("_" in name for name in (*weak.y, *strong.y))  # names in words
    order = list(fig.layout.yaxis.categoryarray)
    assert order[0] == extremes.weakest["class"].iloc[0].replace("_", " ")
    assert order[-1] == extremes.strongest["class"].iloc[0].replace("_", " ")
    assert fine5.run_id in fig.layout.title.text and "F1" in fig.layout.title.text


def _metrics_with_f1(values: dict[str, float]) -> dict:
    return {"class_names": list(values),
            "per_class": [{"class": name, "superclass": "some_group", "precision": v,
                           "recall": v, "f1": v, "support": 4} for name, v in values.items()]}


def test_extremes_figure_of_tied_classes_shows_no_bars_and_says_why():
    tied = ca.weakest_and_strongest(_metrics_with_f1({f"class_{i}": 1.0 for i in range(6)}))
    fig = extremes_figure(tied)
    assert not [t for t in fig.data if t.type == "bar"]  # no class painted weak or strong
    assert "All 6 classes have F1 100.0%" in fig.layout.annotations[0].text


def test_class_difference_figure_keeps_only_changes(fine1, fine5):
    diff = ca.class_difference(fine1.metrics, fine5.metrics, "recall")
    fig = class_difference_figure(diff, fine1.run_id, fine5.run_id, "recall", count=5)
    bar = fig.data[0]
    changed = diff[diff["difference"] != 0]
    assert len(bar.y) == min(5, (changed["difference"] > 0).sum()) + min(
        5, (changed["difference"] < 0).sum())
    for value, color in zip(bar.x, bar.marker.color, strict=True):
        assert value != 0
        assert (color == GOOD) == (value > 0)
    assert fine1.run_id in fig.layout.title.text and fine5.run_id in fig.layout.title.text


def test_confused_pairs_figure(fine1):
    pairs = ca.most_confused_pairs(fine1.metrics, 4)
    fig = confused_pairs_figure(pairs, fine1.run_id)
    assert list(fig.data[0].x) == list(pairs["count"])[::-1]
    first = pairs.iloc[0]
    assert fig.data[0].y[-1] == (f"{first['true class'].replace('_', ' ')} → "
                                 f"{first['predicted as'].replace('_', ' ')}")
    # room beyond the longest bar for its "count (share)" label
    assert fig.layout.xaxis.range[1] > 1.2 * pairs["count"].max()


def test_confusion_heatmap_counts_percent_and_selectable_cells(fine1):
    matrix = ca.confusion_matrix(fine1.metrics, "superclass")
    names = ca.superclass_names(fine1.metrics)
    counts = confusion_figure(matrix, names)
    heat = counts.data[0]
    assert np.array_equal(np.asarray(heat.z), matrix)
    assert list(heat.x) == [readable(n) for n in names] == list(heat.y)
    assert counts.layout.yaxis.autorange == "reversed"
    cells = counts.data[1]
    assert len(cells.x) == 400
    point = {"customdata": list(cells.customdata[47])}
    assert selected_cell([point]) == (2, 7)
    assert cells.x[47] == readable(names[7]) and cells.y[47] == readable(names[2])
    assert cells.customdata[47][2] == matrix[2, 7]
    # plotly selects on click only what is hovered: the markers must be hoverable
    assert cells.hoverinfo != "skip" and "predicted" in cells.hovertemplate
    assert heat.hoverinfo == "skip"
    percent = confusion_figure(matrix, names, normalize=True, selectable=False)
    assert len(percent.data) == 1
    rows = np.asarray(percent.data[0].z)
    nonempty = matrix.sum(axis=1) > 0
    assert rows[nonempty].sum(axis=1) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        confusion_figure(matrix, names[:5])


def test_selected_cell_ignores_points_without_cells():
    assert selected_cell(None) is None
    assert selected_cell([{"x": "a"}, {"customdata": ["bad", 1, 0, 0]}]) is None
    assert selected_cell([{"x": "a"}, {"customdata": [3, 4, 9, 50.0]}]) == (3, 4)
    # a heatmap point's [count, share] is not a cell
    assert selected_cell([{"customdata": [3, 4]}]) is None


def test_selected_cell_reads_customdata_as_streamlit_sends_it_from_the_browser():
    point = {"curve_number": 1, "point_index": 25, "customdata": {"0": 1, "1": 5, "2": 0,
                                                                   "3": 0.0}}
    assert selected_cell([point]) == (1, 5)


def test_fine_confusion_within_superclass_figure(fine1):
    matrix, rows, columns = ca.fine_confusion_within(fine1.metrics, "super_07")
    fig = confusion_figure(matrix, rows, columns, selectable=False)
    assert list(fig.data[0].x) == [readable(c) for c in columns]
    assert columns[-1] == ca.OTHER_COLUMN
    assert np.array_equal(np.asarray(fig.data[0].z), matrix)


def test_top_classes_figure():
    fig = top_classes_figure(["maple_tree", "dog", "fox"], [0.7, 0.2, 0.1])
    bar = fig.data[0]
    assert list(bar.y) == ["maple tree", "dog", "fox"]
    assert list(bar.x) == pytest.approx([70, 20, 10])
    assert list(bar.text) == ["70.0%", "20.0%", "10.0%"]
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError):
        top_classes_figure(["cat"], [0.5, 0.5])


def test_saliency_figure_overlays_the_heatmap_on_the_input():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    heat = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    fig = saliency_figure(image, heat, "gradcam", "cat")
    assert [t.type for t in fig.data] == ["image", "heatmap"]  # heatmap drawn on top
    assert np.array_equal(np.asarray(fig.data[0].z), image)
    assert np.array_equal(np.asarray(fig.data[1].z), heat)
    scale = fig.data[1].colorscale
    assert scale[0][1].endswith(", 0)")  # cold areas fully transparent: the image shows
    assert "Grad-CAM" in fig.layout.title.text and "cat" in fig.layout.title.text
    with pytest.raises(ValueError):
        saliency_figure(image, heat[:16])


def test_trials_parallel_figure_highlights_the_chosen_trial():
    text = ("stage,trial_id,units,optimizer,fold_1,fold_2,mean,seconds\n"
            "1,a,64,adam,0.1,0.3,0.2,1\n1,b,128,sgd,0.3,0.5,0.4,1\n2,c,128,adam,0.5,0.5,0.5,2\n")
    trials = ta.parse_trials(text)
    chosen, _ = ta.chosen_trial(trials, {})
    fig = trials_parallel_figure(trials, chosen)
    parcoords = fig.data[0]
    labels = [d.label for d in parcoords.dimensions]
    assert labels == ["stage", "units", "optimizer", "mean (score)"]
    stage = parcoords.dimensions[0]
    assert list(stage.ticktext) == ["1", "2"] and list(stage.values) == [0, 0, 1]
    optimizer = parcoords.dimensions[2]
    assert list(optimizer.ticktext) == ["adam", "sgd"] and list(optimizer.values) == [0, 1, 0]
    assert list(parcoords.line.color) == [0, 0, 1]
    assert list(parcoords.dimensions[3].values) == pytest.approx([0.2, 0.4, 0.5])


def test_trials_parallel_figure_labels_learning_rates_readably():
    text = ("stage,trial_id,learning_rate,units,mean\n1,a,0.0001,64,0.2\n1,b,0.0003,128,0.3\n"
            "2,c,0.001,64,0.4\n")
    fig = trials_parallel_figure(ta.parse_trials(text))
    rate = next(d for d in fig.data[0].dimensions if d.label.startswith("learning_rate"))
    assert list(rate.ticktext) == ["1e-4", "3e-4", "1e-3"]  # not plotly's "100μ"
    assert "log" in rate.label
    assert list(rate.values) == pytest.approx(np.log10([1e-4, 3e-4, 1e-3]))
    units = next(d for d in fig.data[0].dimensions if d.label == "units")
    assert list(units.ticktext) == ["64", "128"]


def test_augmentation_figure_shows_original_and_labelled_copies():
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    preview = ia.augmentation_previews(images, copies=3, seed=5)
    fig = augmentation_figure(preview, ["first", "second"])
    assert len(fig.data) == 2 * 4
    assert np.array_equal(np.asarray(fig.data[0].z), images[0])
    assert np.array_equal(np.asarray(fig.data[5].z), preview.variants[1, 0])
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "first: original"
    assert titles[5] == f"copy 1: {preview.labels[1][0]}"


def test_model8_has_its_place_and_title_in_the_progression():
    point = ra.ProgressionPoint(model=8, labels="fine", run_id="r8", top1=0.9, top5=0.99,
                                superclass=None, profile="seed", dataset="cifar10-images")
    fig = progression_figure([point], reference={})
    assert 8 in list(fig.layout.xaxis.tickvals)
    label = fig.layout.xaxis.ticktext[list(fig.layout.xaxis.tickvals).index(8)]
    assert "Model 8" in label and "Beyond the" in label
    assert list(_trace(fig, "Fine top-1").y) == pytest.approx([90.0])
