"""Error analysis (issue 17): calibration, near misses, top losses and their figures, checked
against hand-computed cases and the committed fixture runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from cifar_core.analysis.errors import (
    NotApplicable,
    calibration,
    calibration_by_superclass,
    calibration_in_words,
    near_miss_examples,
    near_misses,
    run_calibration,
    top_losses,
)
from cifar_core.analysis.images import load_predictions
from cifar_core.charts.errors import (
    learning_curves_figure,
    near_misses_figure,
    reliability_figure,
)
from cifar_core.runs.store import read_history


def test_ece_of_a_known_set_of_predictions():
    confidence = np.array([0.95, 0.95, 0.85, 0.85, 0.55, 0.55])
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    result = calibration(confidence, correct, bins=10)
    # bins 9, 8 and 5, two images each: |0.5 - 0.95|, |1 - 0.85|, |0.5 - 0.55|
    assert result.ece == pytest.approx((0.45 + 0.15 + 0.05) * 2 / 6)
    assert result.counts.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 2, 2]
    assert result.overall_accuracy == pytest.approx(4 / 6)
    words = calibration_in_words(result, "model 5")
    assert "When model 5 is 90-100% sure, it is right 50% of the time (2 of 6" in words
    # mean confidence 0.783 against 4 of 6 right
    assert "off by 21.7 points" in words and "overconfident by 11.7 points" in words


def test_calibration_bins_agree_with_scikit_learn_also_on_the_edges():
    rng = np.random.default_rng(0)
    confidence = np.concatenate([rng.random(500), [0.1, 0.2, 0.9, 1.0, 0.0]])
    correct = rng.random(len(confidence)) < confidence
    result = calibration(confidence, correct, bins=10)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    filled = result.counts > 0
    np.testing.assert_allclose(result.accuracy[filled], prob_true)
    np.testing.assert_allclose(result.confidence[filled], prob_pred)
    assert result.total == len(confidence)
    with pytest.raises(ValueError, match="no predictions"):
        calibration(np.array([]), np.array([], dtype=bool))


def _metrics(confusion, mapping, label_set="fine"):
    classes = [f"class_{i}" for i in range(len(mapping))]
    return {"label_set": label_set, "class_names": classes,
            "superclass_names": [f"super_{i}" for i in range(max(mapping) + 1)],
            "output_to_superclass": mapping, "confusion": confusion}


def test_near_misses_from_a_known_confusion_matrix():
    # classes 0 and 1 share superclass 0, class 2 is superclass 1 (rows: true class)
    confusion = [[5, 2, 1],
                 [3, 4, 0],
                 [1, 1, 6]]
    result = near_misses(_metrics(confusion, [0, 0, 1]))
    assert (result.inside, result.outside, result.errors, result.total) == (5, 3, 8, 23)
    assert result.inside_share == pytest.approx(5 / 8)
    coarse = near_misses(_metrics(confusion, [0, 0, 1], label_set="coarse"))
    assert isinstance(coarse, NotApplicable) and "superclasses" in coarse.reason
    plain = near_misses({"label_set": "fine", "class_names": ["a", "b"],
                         "confusion": [[1, 0], [0, 1]]})
    assert isinstance(plain, NotApplicable) and "no superclasses" in plain.reason


def _predictions(y_true, y_pred, probs):
    probs = np.asarray(probs, dtype=np.float32)
    top = np.argsort(-probs, axis=1)
    return {"test_index": np.arange(len(y_true)) + 100, "y_true": np.asarray(y_true),
            "y_pred": np.asarray(y_pred), "top_classes": top,
            "top_probs": np.take_along_axis(probs, top, axis=1), "probs": probs}


def test_top_losses_are_the_lowest_probabilities_of_the_true_class():
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.05, 0.05, 0.9]]
    predictions = _predictions([0, 1, 1, 0], [0, 1, 0, 2], probs)
    metrics = _metrics([[1, 0, 1], [1, 1, 0], [0, 0, 0]], [0, 0, 1])
    table = top_losses(predictions, metrics, count=2)
    assert table["position"].tolist() == [3, 2]  # p(true) 0.05, then 0.3
    assert table["test image"].tolist() == [103, 102]
    assert table.loc[0, "true class"] == "class 0" and table.loc[0, "predicted"] == "class 2"
    assert table["loss"].tolist() == pytest.approx([-np.log(0.05), -np.log(0.3)], rel=1e-3)
    assert top_losses(predictions, metrics, offset=2, count=5)["position"].tolist() == [0, 1]
    inside = top_losses(predictions, metrics, superclass="super_0")
    assert len(inside) == 4
    assert isinstance(top_losses(predictions, metrics, superclass="nope"), NotApplicable)
    older = {k: v for k, v in predictions.items() if k != "probs"}
    assert isinstance(top_losses(older, metrics), NotApplicable)
    # the most confident errors of each kind
    assert near_miss_examples(predictions, metrics, inside=True) == [2]
    assert near_miss_examples(predictions, metrics, inside=False) == [3]


def test_the_fixture_runs_calibrate_and_draw(fixture_runs):
    runs = sorted(p for p in (fixture_runs / "runs").iterdir() if p.is_dir())
    fine = [p for p in runs if p.name.endswith("-fine")]
    calibrations = {p.name: run_calibration(load_predictions(p)) for p in fine}
    for result in calibrations.values():
        assert 0 <= result.ece <= 1 and result.total == 200
    fig = reliability_figure(calibrations)
    names = [trace.name for trace in fig.data]
    assert all(any(name.startswith(run) for name in names) for run in calibrations)
    metrics = json.loads((fine[0] / "metrics.json").read_text())
    table = calibration_by_superclass(load_predictions(fine[0]), metrics)
    assert table["test images"].sum() == 200 and list(table["ece"]) == sorted(
        table["ece"], reverse=True)
    rows = [(p.name[-7:], p.name, near_misses(json.loads((p / "metrics.json").read_text())))
            for p in fine]
    bars = near_misses_figure(rows)
    assert [trace.name for trace in bars.data] == ["wrong class, right superclass",
                                                   "wrong superclass"]
    total = sum(np.array(trace.y) for trace in bars.data)
    expected = [100 * n.errors / n.total for _, _, n in rows]
    np.testing.assert_allclose(total, expected)
    curves = learning_curves_figure({p.name: read_history(p) for p in runs}, metric="accuracy",
                                    by="time", log_y=True)
    assert curves.layout.yaxis.type == "log" and len(curves.data) == 2 * len(runs)
    with pytest.raises(ValueError, match="unknown metric"):
        learning_curves_figure({}, metric="f1")


def _class_metrics(recalls, supers=("b", "a", "a")):
    names = ["oak", "maple", "bus"]
    return {"class_names": names, "per_class": [
        {"class": n, "superclass": s, "precision": r, "recall": r, "f1": r, "support": 10}
        for n, s, r in zip(names, supers, recalls, strict=True)]}


def test_class_by_model_groups_by_superclass_and_sorts_by_gain():
    from cifar_core.analysis.compare import class_by_model, fixed_and_unfixed, sorted_by_gain
    from cifar_core.charts.confusion import selected_cell
    from cifar_core.charts.errors import class_by_model_figure
    from cifar_core.errors import RunFolderError

    columns = [("model 1", "r1", _class_metrics([0.2, 0.4, 0.1])),
               ("model 6", "r6", _class_metrics([0.9, 0.45, 0.3]))]
    table = class_by_model(columns)
    # superclass "a" first (maple, bus by name... bus < maple), then "b" (oak)
    assert table.classes == ["bus", "maple", "oak"] and table.superclasses == ["a", "a", "b"]
    assert table.values["model 6"].tolist() == [0.3, 0.45, 0.9]
    by_gain = sorted_by_gain(table, "model 1", "model 6")
    assert by_gain.classes == ["oak", "bus", "maple"]  # gains 0.7, 0.2, 0.05
    fixed, never = fixed_and_unfixed(table, "model 1", "model 6")
    assert fixed == ["oak"] and never == ["bus", "maple"]
    fig = class_by_model_figure(by_gain)
    assert "runs r1, r6" in fig.layout.title.text
    assert list(fig.data[0].y) == ["oak (b)", "bus (a)", "maple (a)"]
    coarse = [("model 1", "c1", _class_metrics([0.2, 0.4, 0.1], supers=("oak", "maple", "bus")))]
    assert list(class_by_model_figure(class_by_model(coarse)).data[0].y) == [
        "bus", "maple", "oak"]  # a superclass run: no class named twice
    cells = fig.data[1].customdata
    point = {"customdata": {str(i): v for i, v in enumerate(cells[1])}}  # as the browser sends
    assert selected_cell([point]) == (0, 1)  # oak under model 6
    other = _class_metrics([0.1, 0.2, 0.3])
    other["class_names"] = ["a", "b", "c"]
    with pytest.raises(RunFolderError, match="other classes"):
        class_by_model([*columns, ("model 2", "r2", other)])
    with pytest.raises(ValueError, match="unknown metric"):
        class_by_model(columns, "accuracy")


def test_a_test_image_is_picked_by_class_and_draw_number():
    from cifar_core.analysis.images import pick_test_image

    predictions = _predictions([0, 1, 1, 0, 2], [0, 1, 0, 2, 2], np.eye(3)[[0, 1, 0, 2, 2]])
    picks = {pick_test_image(predictions, 1, draw).test_index for draw in range(20)}
    assert picks == {101, 102}  # only images of class 1, and both of them over the draws
    assert pick_test_image(predictions, 1, 3) == pick_test_image(predictions, 1, 3)
    anyone = pick_test_image(predictions, None, 0)
    assert anyone.true_class == int(predictions["y_true"][anyone.test_index - 100])
    assert pick_test_image(predictions, 7, 0) is None

