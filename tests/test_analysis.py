"""cifar_core.analysis against run folders made by the real pipeline (the committed
fixture_runs; trained afresh where a test loads a model or needs more runs)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from cifar_archives import write_cifar100_archive
from hostile_files import decompression_bomb_png
from PIL import Image

from cifar_core.analysis import classes as ca
from cifar_core.analysis import images as ia
from cifar_core.analysis import report as rp
from cifar_core.analysis import runs as ra
from cifar_core.analysis import trials as ta
from cifar_core.analysis.data_status import data_status
from cifar_core.errors import DataError, ImageError, RunFolderError
from cifar_core.models.specs import REPORT_RESULTS
from cifar_core.reports import html as html_report
from cifar_core.runs.store import list_runs, load_run

# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(fixture_runs):
    return list_runs(fixture_runs)


def _find(records, model, labels):
    return next(r for r in records if r.model_number == model and r.label_set == labels)


@pytest.fixture(scope="module")
def fine1(records):
    return _find(records, 1, "fine")


@pytest.fixture(scope="module")
def fine5(records):
    return _find(records, 5, "fine")


@pytest.fixture(scope="module")
def coarse1(records):
    return _find(records, 1, "coarse")


@pytest.fixture(scope="module")
def trained_fine1(trained_runs):
    """Model 1 (fine) with its ``model.keras``, trained afresh: the committed runs have none."""
    return _find(list_runs(trained_runs), 1, "fine")


@pytest.fixture(scope="module")
def trained_fine5(trained_runs):
    """Model 5 (fine) with its ``model.keras``, trained afresh: the committed runs have none."""
    return _find(list_runs(trained_runs), 5, "fine")


@pytest.fixture(scope="module")
def more_runs(tmp_path_factory, fixture_runs, tiny_cifar100, tiny_image_folder):
    """The fixture runs plus a second model-1 run (another seed) and a run on other data."""
    from cifar_core.data import load_dataset
    from cifar_core.pipeline import execute_run
    from cifar_core.training.config import make_config

    artifacts = tmp_path_factory.mktemp("more_runs")
    shutil.copytree(fixture_runs / "runs", artifacts / "runs")
    execute_run(make_config(1, profile="quick", epochs=1, batch_size=32, seed=7),
                dataset=load_dataset(tiny_cifar100), artifacts=str(artifacts), log=lambda _: None)
    execute_run(make_config(1, profile="quick", epochs=1, batch_size=8),
                dataset=load_dataset(tiny_image_folder), artifacts=str(artifacts),
                log=lambda _: None)
    return artifacts


def _copy_run(record, root, new_id, **run_fields):
    target = root / "runs" / new_id
    shutil.copytree(record.path, target)
    run = json.loads((target / "run.json").read_text())
    run.update(run_id=new_id, **run_fields)
    (target / "run.json").write_text(json.dumps(run))
    return target


# --- runs ---------------------------------------------------------------------------------


@pytest.mark.slow  # more_runs trains
def test_latest_completed_run_counts_unless_the_user_chooses(more_runs):
    records = list_runs(more_runs)
    cifar = next(k for k, label in ra.datasets_of(records).items() if k.startswith("cifar100"))
    group = ra.runs_by_model(records, cifar)[(1, "fine")]
    assert len(group) == 2
    newest, older = group
    assert (newest.run.get("created_at"), newest.run_id) > (older.run.get("created_at"),
                                                            older.run_id)
    assert ra.choose_counting_runs(records, dataset=cifar)[(1, "fine")].run_id == newest.run_id
    chosen = ra.choose_counting_runs(records, {"1-fine": older.run_id}, cifar)
    assert chosen[(1, "fine")].run_id == older.run_id
    # A stale choice (a deleted run) falls back to the latest, never hides the model.
    stale = ra.choose_counting_runs(records, {"1-fine": "gone"}, cifar)
    assert stale[(1, "fine")].run_id == newest.run_id


@pytest.mark.slow  # trained_fine1 trains
def test_a_newer_run_of_an_earlier_spec_does_not_count_by_default(tmp_path, trained_fine1):
    """A run trained before the spec changed (a reverted trial, an older recipe) still says
    "model 1"; the latest run of the current spec counts unless the user picks the other."""
    fine1 = trained_fine1  # with every file, model.keras too: no problem but the spec's
    shutil.copytree(fine1.path, tmp_path / "runs" / fine1.run_id)
    trial = _copy_run(fine1, tmp_path, "29990101-000000-m1-fine",
                      created_at="2999-01-01T00:00:00+00:00")
    config = json.loads((trial / "config.json").read_text())
    config["model"]["conv_filters"] = 32
    (trial / "config.json").write_text(json.dumps(config))

    records = list_runs(tmp_path)
    newest, current = ra.runs_by_model(records)[(1, "fine")]
    assert newest.run_id == trial.name and current.run_id == fine1.run_id
    assert not ra.is_current_spec(newest) and ra.is_current_spec(current)
    assert ra.choose_counting_runs(records)[(1, "fine")].run_id == fine1.run_id
    assert ra.choose_counting_runs(records, {"1-fine": trial.name})[(1, "fine")] == newest
    assert "earlier spec" in ra.run_label(newest) and "earlier spec" not in ra.run_label(current)
    problems = ra.runs_table(records).set_index("run id")["problems"]
    assert problems[trial.name] == "earlier spec (conv_filters: 32 -> 10)"
    assert problems[fine1.run_id] == ""
    # A head chosen for the run (as model 7's search or --freeze-base do) is the run's own,
    # not an earlier spec.
    own_head = json.loads((fine1.path / "config.json").read_text())
    own_head["model"]["hidden_units"] = own_head["hyperparameters"]["hidden_units"] = [32]
    variant = ra.RunRecord(run_id="variant", path=fine1.path, status="completed",
                           config=own_head, metrics=fine1.metrics)
    assert ra.is_current_spec(variant) and "earlier spec" not in ra.run_label(variant)
    own_head["hyperparameters"]["hidden_units"] = None  # the same head, not asked for: older
    assert not ra.is_current_spec(variant)
    # With no run of the current spec left, the latest counts: the model is never hidden.
    only_trial = [r for r in records if r.run_id != fine1.run_id]
    assert ra.choose_counting_runs(only_trial)[(1, "fine")].run_id == trial.name


@pytest.mark.slow  # more_runs trains
def test_runs_of_different_data_sets_are_never_mixed(more_runs):
    records = list_runs(more_runs)
    datasets = ra.datasets_of(records)
    assert len(datasets) == 2
    for key in datasets:
        counting = ra.choose_counting_runs(records, dataset=key)
        assert {ra.dataset_key(r) for r in counting.values()} == {key}
    folder = next(k for k in datasets if not k.startswith("cifar100"))
    assert set(ra.choose_counting_runs(records, dataset=folder)) == {(1, "fine")}


def test_progression_points_carry_the_runs_numbers(records, fine1, fine5, coarse1):
    points = ra.progression_points(ra.choose_counting_runs(records))
    assert [(p.model, p.labels) for p in points] == [(1, "fine"), (1, "coarse"), (5, "fine")]
    by_run = {p.run_id: p for p in points}
    for record in (fine1, fine5, coarse1):
        point = by_run[record.run_id]
        assert point.top1 == record.metrics["test_top1"]
        assert point.top5 == record.metrics["test_top5"]
        assert point.superclass == record.metrics["test_superclass_top1"]
    assert by_run[coarse1.run_id].superclass == coarse1.metrics["test_top1"]


def test_runs_table_lists_every_run_with_status_and_problems(tmp_path, fixture_runs, fine1):
    shutil.copytree(fixture_runs / "runs", tmp_path / "runs")
    broken = _copy_run(fine1, tmp_path, "20000101-000000-m1-fine")
    (broken / "metrics.json").write_text("{not json")
    newer = tmp_path / "runs" / "20000101-000001-m9-fine"
    newer.mkdir()
    (newer / "run.json").write_text(json.dumps({"schema_version": 99, "status": "completed"}))
    records = list_runs(tmp_path)
    counting = ra.choose_counting_runs(records)
    table = ra.runs_table(records, counting)
    assert list(table.columns) == list(ra.RUNS_TABLE_COLUMNS)
    assert len(table) == len(records) == 5
    rows = table.set_index("run id")
    assert "metrics.json: unreadable" in rows.loc[broken.name, "problems"]
    assert rows.loc["20000101-000001-m9-fine", "status"] == "unreadable"
    assert "schema version 99" in rows.loc["20000101-000001-m9-fine", "problems"]
    assert rows.loc[fine1.run_id, "top-1 %"] == pytest.approx(100 * fine1.metrics["test_top1"])
    assert rows["counts"].sum() == 3 and not rows.loc[broken.name, "counts"]
    assert not ra.is_usable(load_run(broken))
    assert list(table.columns[:3]) == ["run id", "status", "counts"]  # in view when narrow


def test_runs_table_shows_a_queued_jobs_request_and_no_none(tmp_path, tiny_cifar100,
                                                             jobs_without_processes):
    from cifar_core.jobs import submit_job

    queued = submit_job(tmp_path, model=5, labels="fine", profile="quick",
                        data=str(tiny_cifar100))
    bare = tmp_path / "runs" / "20000101-000000-m2-fine"  # a queued run with no job.json
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"schema_version": 1, "status": "queued",
                                               "run_id": bare.name}))
    rows = ra.runs_table(list_runs(tmp_path)).set_index("run id")
    assert rows.loc[queued, "status"] == "queued"
    assert list(rows.loc[queued, ["model", "labels", "profile"]]) == ["5", "fine", "quick"]
    assert list(rows.loc[bare.name, ["model", "labels", "profile"]]) == ["-", "-", "-"]
    for column in ("model", "labels", "profile"):
        assert not rows[column].isna().any() and "None" not in set(rows[column])


def test_runs_table_shows_training_time_and_the_whole_run(tmp_path, fine1):
    copy = _copy_run(fine1, tmp_path, "20000101-000000-m1-fine",
                     started_at="2000-01-01T10:00:00+00:00",
                     ended_at="2000-01-01T10:36:30+00:00")
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["training"]["training_seconds"] = 1380.0  # the fit alone: 23 minutes
    (copy / "metrics.json").write_text(json.dumps(metrics))
    row = ra.runs_table(list_runs(tmp_path)).iloc[0]
    assert row["training (s)"] == 1380.0
    assert row["whole run (min)"] == 36.5  # feature pass, warm-up, evaluation included
    running = load_run(_copy_run(fine1, tmp_path, "20000101-000001-m1-fine", ended_at=None))
    assert ra.run_minutes(running) is None  # not ended: no duration yet


def test_data_set_names_are_shown_as_people_write_them(fine1):
    assert ra.dataset_display_name("cifar100") == "CIFAR-100"
    assert ra.dataset_display_name("cifar10-images") == "cifar10-images"  # as given
    assert ra.dataset_name(fine1) == "CIFAR-100"
    assert ra.dataset_label(fine1).startswith("CIFAR-100 (")
    assert ra.dataset_key(fine1).startswith("cifar100:")  # keys keep the id


def test_fingerprint_changes_when_a_run_appears_or_finishes(tmp_path, fine1):
    before = ra.runs_fingerprint(tmp_path)
    copy = _copy_run(fine1, tmp_path, "20000101-000000-m1-fine")
    added = ra.runs_fingerprint(tmp_path)
    assert added != before
    assert ra.runs_fingerprint(tmp_path) == added  # stable while nothing changes
    (copy / "metrics.json").write_text((copy / "metrics.json").read_text() + " ")
    assert ra.runs_fingerprint(tmp_path) != added


def test_run_label_names_model_labels_accuracy_and_id(fine1):
    label = ra.run_label(fine1)
    assert label.startswith("m1 · fine · quick · ")
    assert f"{100 * fine1.metrics['test_top1']:.1f}%" in label
    assert label.endswith(fine1.run_id)


# --- classes ------------------------------------------------------------------------------


def test_per_class_table_and_superclass_filter(fine1):
    table = ca.per_class_table(fine1.metrics)
    assert len(table) == 100
    assert table["support"].sum() == fine1.metrics["num_test"]
    assert table.loc[7, "f1"] == fine1.metrics["per_class"][7]["f1"]
    only = ca.per_class_table(fine1.metrics, ["super_03"])
    assert set(only["superclass"]) == {"super_03"} and len(only) == 5


def test_weakest_and_strongest_are_ordered_and_disjoint(fine5):
    extremes = ca.weakest_and_strongest(fine5.metrics, "recall", 10)
    weakest, strongest = extremes.weakest, extremes.strongest
    assert len(weakest) == 10 and 0 < len(strongest) <= 10
    assert list(weakest["recall"]) == sorted(weakest["recall"])
    assert list(strongest["recall"]) == sorted(strongest["recall"], reverse=True)
    assert not set(weakest["class"]) & set(strongest["class"])
    assert strongest["recall"].min() > weakest["recall"].max()  # no value on both sides
    table = ca.per_class_table(fine5.metrics)
    assert strongest["recall"].iloc[0] == table["recall"].max()
    assert weakest["recall"].iloc[0] == table["recall"].min()
    with pytest.raises(ValueError):
        ca.weakest_and_strongest(fine5.metrics, "accuracy")


def _metrics_with_f1(values: dict[str, float], support: int = 4) -> dict:
    return {"class_names": list(values),
            "per_class": [{"class": name, "superclass": "group", "precision": v, "recall": v,
                           "f1": v, "support": support} for name, v in values.items()]}


def test_tied_classes_are_neither_weakest_nor_strongest():
    tied = ca.weakest_and_strongest(_metrics_with_f1({f"c{i:02d}": 1.0 for i in range(100)}))
    assert tied.all_tied and tied.weakest.empty and tied.strongest.empty
    assert tied.message.startswith("All 100 classes have F1 100.0%")
    # Most classes at the top: only those below it are weak, and the cut of the strongest
    # falls inside the tie, which the note says instead of ranking the tie by name silently.
    top_heavy = ca.weakest_and_strongest(
        _metrics_with_f1({"a": 0.2, "b": 0.4, **{f"z{i}": 1.0 for i in range(6)}}), count=3)
    assert list(top_heavy.weakest["class"]) == ["a", "b"]
    assert list(top_heavy.strongest["f1"]) == [1.0, 1.0, 1.0]
    assert "6 classes have F1 100.0% at the cut of the strongest list" in top_heavy.message
    # A tie across the middle: the strongest shown are all above every weakest shown.
    middle = ca.weakest_and_strongest(
        _metrics_with_f1({"a": 0.1, "b": 0.5, "c": 0.5, "d": 0.5, "e": 0.9, "f": 0.9}), count=3)
    assert list(middle.weakest["class"]) == ["a", "b", "c"]
    assert list(middle.strongest["class"]) == ["e", "f"]
    assert "3 classes have F1 50.0% at the cut of the weakest list" in middle.message
    clear = ca.weakest_and_strongest(_metrics_with_f1({"a": 0.1, "b": 0.5, "c": 0.9}), count=1)
    assert clear.message is None and not clear.all_tied
    none = ca.weakest_and_strongest(_metrics_with_f1({"a": 0.0}, support=0))
    assert none.classes == 0 and "nothing to rank" in none.message


def test_per_class_tables_in_words_keep_the_data_raw(fine1):
    table = ca.per_class_table(fine1.metrics)
    shown = ca.in_words(table)
    assert shown.loc[7, "class"] == "class 07" and shown.loc[7, "superclass"] == "super 07"
    assert table.loc[7, "class"] == "class_07"  # the data itself is unchanged
    assert (shown["f1"] == table["f1"]).all()


def test_class_difference_is_b_minus_a_per_class(fine1, fine5, coarse1):
    diff = ca.class_difference(fine1.metrics, fine5.metrics, "f1")
    a = ca.per_class_table(fine1.metrics).set_index("class")["f1"]
    b = ca.per_class_table(fine5.metrics).set_index("class")["f1"]
    for row in diff.itertuples():
        assert row.difference == pytest.approx(b[row._1] - a[row._1])
    assert list(diff["difference"]) == sorted(diff["difference"], reverse=True)
    with pytest.raises(RunFolderError, match="different classes"):
        ca.class_difference(fine1.metrics, coarse1.metrics)


def test_most_confused_pairs_come_from_the_confusion_matrix(fine1):
    matrix = np.asarray(fine1.metrics["confusion"])
    pairs = ca.most_confused_pairs(fine1.metrics, 5)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    assert pairs["count"].iloc[0] == off.max()
    assert list(pairs["count"]) == sorted(pairs["count"], reverse=True)
    for row in pairs.itertuples():
        assert row.count == matrix[row._5, row._6]
        assert row._5 != row._6
        assert row._4 == pytest.approx(100 * row.count / matrix[row._5].sum(), abs=0.05)


def test_fine_confusion_within_a_superclass_keeps_every_image(fine1):
    matrix, rows, columns = ca.fine_confusion_within(fine1.metrics, "super_03")
    assert rows == ["class_03", "class_23", "class_43", "class_63", "class_83"]
    assert columns == [*rows, ca.OTHER_COLUMN]
    support = ca.per_class_table(fine1.metrics).set_index("class")["support"]
    assert list(matrix.sum(axis=1)) == [support[c] for c in rows]
    full = np.asarray(fine1.metrics["confusion"])
    assert matrix[0, 1] == full[3, 23]


def test_fine_confusion_refuses_coarse_runs_and_unknown_superclasses(fine1, coarse1):
    with pytest.raises(RunFolderError, match="superclasses only"):
        ca.fine_confusion_within(coarse1.metrics, "super_00")
    with pytest.raises(RunFolderError, match="unknown superclass"):
        ca.fine_confusion_within(fine1.metrics, "nope")


def test_malformed_metrics_get_a_clear_error(fine1):
    broken = {**fine1.metrics, "confusion_superclass": [[1, 2], [3]]}
    with pytest.raises(RunFolderError, match="confusion_superclass"):
        ca.confusion_matrix(broken, "superclass")
    with pytest.raises(RunFolderError, match="per_class"):
        ca.per_class_table({k: v for k, v in fine1.metrics.items() if k != "per_class"})
    rows = ca.normalize_rows(np.array([[1, 3], [0, 0]]))
    assert rows.tolist() == [[0.25, 0.75], [0.0, 0.0]]


# --- predictions and images ---------------------------------------------------------------


def test_select_examples_misclassified_and_correct(fine5):
    preds = ia.load_predictions(fine5.path)
    y_true, y_pred = preds["y_true"], preds["y_pred"]
    for cls in range(100):
        wrong = ia.select_examples(preds, true_class=cls, correct=False, limit=100)
        right = ia.select_examples(preds, true_class=cls, correct=True, limit=100)
        assert len(wrong) == int(np.sum((y_true == cls) & (y_pred != cls)))
        assert len(right) == int(np.sum((y_true == cls) & (y_pred == cls)))
        assert all(e.true_class == cls != e.predicted_class for e in wrong)
        confidences = [e.confidence for e in wrong]
        assert confidences == sorted(confidences, reverse=True)
    assert len(ia.select_examples(preds, true_class=0, correct=False, limit=1)) <= 1


def test_cell_examples_match_the_superclass_confusion(fine1, coarse1):
    for record in (fine1, coarse1):
        preds = ia.load_predictions(record.path)
        matrix = ca.confusion_matrix(record.metrics, "superclass")
        i, j = np.unravel_index(np.argmax(matrix - np.diag(np.diag(matrix))), matrix.shape)
        cell = ia.cell_examples(preds, record.metrics, int(i), int(j), limit=1000)
        assert len(cell) == matrix[i, j] > 0


def test_load_predictions_refuses_missing_and_corrupt_files(tmp_path, fine1):
    with pytest.raises(RunFolderError, match="missing"):
        ia.load_predictions(tmp_path)
    (tmp_path / "predictions.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(RunFolderError, match="unreadable"):
        ia.load_predictions(tmp_path)
    arrays = dict(np.load(fine1.path / "predictions.npz"))
    arrays["y_pred"] = arrays["y_pred"][:3]
    np.savez(tmp_path / "predictions.npz", **arrays)
    with pytest.raises(RunFolderError, match="different lengths"):
        ia.load_predictions(tmp_path)


def test_run_dataset_loads_the_recorded_source_and_checks_its_hash(fine1, tmp_path):
    dataset = ia.run_dataset(fine1)
    assert dataset.content_hash == fine1.config["dataset"]["sha256"]
    preds = ia.load_predictions(fine1.path)
    example = ia.select_examples(preds, true_class=5, correct=False, limit=1)[0]
    items = ia.gallery([example], dataset.x_test, fine1.metrics, size=64)
    assert items[0].image.shape == (64, 64, 3)
    assert np.array_equal(items[0].image[::2, ::2], dataset.x_test[example.test_index])
    assert "true class 05" in items[0].caption and f"#{example.test_index}" in items[0].caption


def test_run_dataset_refuses_changed_or_missing_data(fine1, tmp_path):
    moved = _copy_run(fine1, tmp_path, "20000101-000000-m1-fine")
    config = json.loads((moved / "config.json").read_text())
    config["dataset"]["source"] = str(tmp_path / "gone.tar.gz")
    (moved / "config.json").write_text(json.dumps(config))
    record = load_run(moved)
    with pytest.raises(DataError, match="not found"):
        ia.run_dataset(record)
    other = write_cifar100_archive(tmp_path / "other.tar.gz", seed=3)
    with pytest.raises(DataError, match="changed since the run"):
        ia.run_dataset(record, fallback_source=str(other))
    # The right data under another path (a copied run folder) is accepted.
    same = shutil.copy(fine1.config["dataset"]["source"], tmp_path / "same.tar.gz")
    assert ia.run_dataset(record, fallback_source=str(same)).content_hash == \
        fine1.config["dataset"]["sha256"]


def test_pick_images_is_seeded_and_respects_the_class(fine1):
    dataset = ia.run_dataset(fine1)
    first = ia.pick_images(dataset, "train", None, 6, seed=3)
    assert np.array_equal(first, ia.pick_images(dataset, "train", None, 6, seed=3))
    assert not np.array_equal(first, ia.pick_images(dataset, "train", None, 6, seed=4))
    chosen = ia.pick_images(dataset, "test", 42, 10, seed=0)
    assert len(chosen) == 2 and set(dataset.y_test[chosen]) == {42}  # 2 test images a class


def test_augmentation_previews_are_seeded_flips_drawn_independently():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    first = ia.augmentation_previews(images, copies=4, seed=11)
    again = ia.augmentation_previews(images, copies=4, seed=11)
    other = ia.augmentation_previews(images, copies=4, seed=12)
    assert first.variants.shape == (16, 4, 32, 32, 3)
    assert np.array_equal(first.variants, again.variants)
    assert not np.array_equal(first.variants, other.variants)
    seen = {label for row in first.labels for label in row}
    assert seen <= set(ia.FLIP_NAMES.values())
    for i, row in enumerate(first.labels):
        for j, label in enumerate(row):
            assert ia.identify_flip(images[i], first.variants[i, j]) == label
    # Model 5 flips each axis on its own coin: all four variants occur.
    assert set(ia.flip_transforms()) == set(ia.FLIP_NAMES.values())
    with pytest.raises(DataError):
        ia.augmentation_previews(images[:, :16], copies=2)


# --- saliency and classify ----------------------------------------------------------------


def _region_models():
    """Two models whose score depends only on the top-left 8x8 pixels."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(4, 2, activation="relu", name="conv")(x)
    x = keras.layers.Cropping2D(((0, 23), (0, 23)))(conv)  # keep the top-left 8x8 of 31x31
    x = keras.layers.GlobalAveragePooling2D()(x)
    conv_model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    y = keras.layers.Cropping2D(((0, 24), (0, 24)))(inputs)
    y = keras.layers.Rescaling(1 / 255)(y)
    y = keras.layers.Flatten()(y)
    plain_model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(y))
    return conv_model, plain_model


def test_saliency_points_at_the_pixels_that_decide():
    from cifar_core.analysis.saliency import saliency_map

    conv_model, plain_model = _region_models()
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for model, method in ((conv_model, "gradcam"), (plain_model, "smoothgrad"),
                          (conv_model, "smoothgrad")):
        result = saliency_map(model, image, method="auto" if method == "gradcam" else method)
        assert result.method == method
        heat = result.heatmap
        assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() == pytest.approx(1)
        inside = heat[:10, :10].sum()
        assert inside / heat.sum() > 0.9, method
    again = saliency_map(plain_model, image, method="smoothgrad", seed=0)
    assert np.array_equal(again.heatmap, saliency_map(plain_model, image, method="smoothgrad",
                                                      seed=0).heatmap)
    with pytest.raises(ValueError, match="Grad-CAM"):
        saliency_map(plain_model, image, method="gradcam")
    with pytest.raises(ValueError):
        saliency_map(plain_model, image, method="lime")


@pytest.mark.slow  # trained_fine5 trains
def test_classify_upload_matches_the_cli_path(trained_fine5):
    from cifar_core.analysis.classify import classify_upload
    from cifar_core.data.images import load_image_array
    from cifar_core.inference import Classifier

    classifier = Classifier(trained_fine5.path)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (45, 60, 4),
                                                              dtype=np.uint8), "RGBA")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    result = classify_upload(classifier, buffer.getvalue(), "x.png")
    expected = classifier.predict(load_image_array(buffer.getvalue()))[0]
    assert np.array_equal(result.model_input, load_image_array(buffer.getvalue()))
    assert result.prediction.classes == expected.classes
    assert result.prediction.superclass == expected.superclass
    assert result.original_size == (60, 45) and result.run_id == trained_fine5.run_id
    assert result.saliency.method == "gradcam"
    assert result.saliency.class_index == expected.indices[0]
    with pytest.raises(ImageError):
        classify_upload(classifier, b"not an image", "x.png")
    png = buffer.getvalue()
    with pytest.raises(ImageError):
        classify_upload(classifier, png[: len(png) // 2], "half.png")
    bomb = decompression_bomb_png()
    with pytest.raises(ImageError, match=r"too many pixels|decompression bomb"):
        classify_upload(classifier, bomb, "bomb.png")
    # A large JPEG is decoded at reduced scale (fast); the size shown is the file's own.
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (929, 512, 3), dtype=np.uint8)
                    ).save(photo, "JPEG")
    jpeg = classify_upload(classifier, photo.getvalue(), "photo.jpg", explain=False)
    assert jpeg.original_size == (512, 929)


def test_stored_size_reads_the_header_and_applies_exif_rotation():
    from cifar_core.analysis.classify import stored_size

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees, as phone photos record portrait
    rotated = io.BytesIO()
    Image.new("RGB", (640, 480), "red").save(rotated, "JPEG", exif=exif.tobytes())
    assert stored_size(rotated.getvalue()) == (480, 640)  # as the decoder turns it upright
    plain = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(plain, "PNG")
    assert stored_size(plain.getvalue()) == (300, 200)


def test_uncertainty_is_said_plainly_when_the_model_hardly_prefers_its_top_class():
    from cifar_core.analysis.classify import UNSURE_BELOW, uncertainty
    from cifar_core.inference import Prediction

    def prediction(*probabilities):
        return Prediction(classes=["maple_tree", "oak_tree", "bus"][:len(probabilities)],
                          probabilities=list(probabilities), superclass="trees",
                          indices=list(range(len(probabilities))))

    low = uncertainty(prediction(0.05, 0.04, 0.03))
    assert low.startswith("The model is unsure") and "maple tree" in low and "5.0%" in low
    assert uncertainty(prediction(UNSURE_BELOW - 0.01, 0.01)) is not None
    close = uncertainty(prediction(0.48, 0.45, 0.07))
    assert "between maple tree (48.0%) and oak tree (45.0%)" in close
    assert uncertainty(prediction(0.92, 0.05, 0.03)) is None


# --- trials -------------------------------------------------------------------------------

TRIALS_CSV = """\
stage,trial_id,units_1,units_2,dropout,learning_rate,optimizer,fold_1,fold_2,fold_3,mean,seconds
1,t00,128,64,0.2,0.001,adam,0.30,0.32,0.31,0.31,12.5
1,t01,256,64,0.3,0.0005,sgd,0.25,0.27,0.26,0.26,11.0
1,t02,512,128,0.2,0.001,adam,0.35,0.36,0.37,0.36,13.1
1,t03,64,32,0.5,0.01,rmsprop,,,,,
2,g00,512,128,0.2,0.001,adam,0.40,0.41,0.42,0.41,30.2
2,g01,512,64,0.2,0.001,adam,0.43,0.44,0.42,0.43,29.0
"""


def test_trials_are_parsed_with_roles_and_unfinished_rows_noted():
    trials = ta.parse_trials(TRIALS_CSV)
    assert trials.stage == "stage" and trials.trial == "trial_id"
    assert trials.fold_columns == ["fold_1", "fold_2", "fold_3"]
    assert trials.score == "mean" and trials.seconds == "seconds"
    assert trials.hyperparameters == ["units_1", "units_2", "dropout", "learning_rate",
                                      "optimizer"]
    assert len(trials.frame) == 5 and "t03" not in set(trials.frame["trial_id"])
    assert any("without a score" in n for n in trials.notes)
    assert trials.stages == [1, 2]


def test_trials_with_other_names_and_no_mean_column():
    text = "Stage,Trial ID,Units 1,Fold 1,Fold 2\nrandom,a,64,0.2,0.4\ngrid,b,128,0.5,0.7\n"
    trials = ta.parse_trials(text)
    assert trials.trial == "trial_id" and trials.hyperparameters == ["units_1"]
    assert trials.frame["mean"].tolist() == pytest.approx([0.3, 0.6])
    assert any("mean of the fold scores" in n for n in trials.notes)
    with pytest.raises(RunFolderError, match="no mean score"):
        ta.parse_trials("stage,units\n1,64\n")
    with pytest.raises(RunFolderError, match="no finished trials"):
        ta.parse_trials("stage,mean\n1,\n")


def test_chosen_trial_by_recorded_id_by_matching_values_or_best_of_last_stage():
    trials = ta.parse_trials(TRIALS_CSV)
    frame = trials.frame
    index, reason = ta.chosen_trial(trials, {"search": {"best_trial_id": "g00"}})
    assert frame.loc[index, "trial_id"] == "g00" and "recorded" in reason
    config = {"hyperparameters": {"dropout": 0.2, "learning_rate": 0.001, "optimizer": "adam",
                                  "units_1": 512, "units_2": 128}}
    index, reason = ta.chosen_trial(trials, config)
    assert frame.loc[index, "trial_id"] == "g00" and "match" in reason
    index, reason = ta.chosen_trial(trials, {})
    assert frame.loc[index, "trial_id"] == "g01" and "last stage" in reason


def test_the_chosen_trial_says_how_it_was_chosen_and_its_stage_comes_first():
    trials = ta.parse_trials(TRIALS_CSV.replace(",mean,", ",mean_val_accuracy,"))
    index, reason = ta.chosen_trial(trials, {"search": {"chosen_trial_id": "g01"}})
    assert reason.startswith("trial g01, the best mean validation accuracy of stage 2 "
                             "(grid search): the configuration the final model was trained")
    assert ta.stages_chosen_first(trials, index) == [2, 1]  # the winner's stage first
    early = trials.frame.index[trials.frame["trial_id"] == "t02"][0]
    assert ta.stages_chosen_first(trials, early) == [1, 2]
    assert ta.stages_chosen_first(trials, None) == [1, 2]
    index, reason = ta.chosen_trial(trials, {"search": {"chosen_trial_id": "g00"}})
    assert "the search's choice" in reason and "best" not in reason  # g00 is not stage 2's best


def test_read_trials_from_a_run_folder(tmp_path):
    assert ta.read_trials(tmp_path) is None
    (tmp_path / "trials.csv").write_text(TRIALS_CSV)
    assert len(ta.read_trials(tmp_path).frame) == 5
    (tmp_path / "trials.csv").write_bytes(b"\x00\x01garbage\n\"unclosed")
    with pytest.raises(RunFolderError):
        ta.read_trials(tmp_path)


# --- report and CSV -----------------------------------------------------------------------


def test_headline_numbers_name_their_runs(records, fine1, fine5, coarse1):
    points = ra.progression_points(ra.choose_counting_runs(records))
    numbers = {n.label: n for n in rp.headline_numbers(points)}
    best = max((fine1, fine5), key=lambda r: (r.metrics["test_top1"], r.model_number))
    assert numbers["Best fine top-1"].value == best.metrics["test_top1"]
    assert numbers["Best fine top-1"].run_id == best.run_id
    supers = {r.run_id: r.metrics["test_superclass_top1"] for r in (fine1, fine5, coarse1)}
    top_super = numbers["Best superclass accuracy"]
    assert top_super.value == max(supers.values()) == supers[top_super.run_id]


def test_metrics_csv_holds_every_completed_run_with_its_configuration(records):
    counting = ra.choose_counting_runs(records)
    frame = pd.read_csv(io.StringIO(rp.metrics_csv(records, counting)))
    assert list(frame.columns) == list(rp.METRICS_CSV_COLUMNS)
    assert set(frame["run_id"]) == {r.run_id for r in records}
    for record in records:
        row = frame.set_index("run_id").loc[record.run_id]
        assert row["test_top1"] == pytest.approx(record.metrics["test_top1"])
        assert row["dataset_sha256"] == record.config["dataset"]["sha256"]
        assert row["seed"] == record.config["seed"]
        assert row["git_commit"] == record.config["environment"]["git"]["commit"]


def test_per_class_csv(fine1):
    frame = pd.read_csv(io.StringIO(rp.per_class_csv(fine1)))
    assert len(frame) == 100 and set(frame["run_id"]) == {fine1.run_id}
    assert frame["f1"].tolist() == pytest.approx([c["f1"] for c in fine1.metrics["per_class"]])


def _external_resources(page: str) -> list[str]:
    from html.parser import HTMLParser

    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag in ("script", "img", "iframe") and attrs.get("src"):
                found.append(attrs["src"])
            if tag == "link" and attrs.get("href"):
                found.append(attrs["href"])

    Collector().feed(page)
    return found


def test_html_report_is_self_contained_and_traceable(records):
    counting = ra.choose_counting_runs(records)
    page = html_report.build_html_report(records, counting)
    assert page.startswith("<!DOCTYPE html>")
    assert _external_resources(page) == []  # plotly.js is inline: the file opens offline
    assert "Plotly" in page and len(page) > 3_000_000
    assert page.count("Plotly.newPlot") >= 3  # progression, superclass matrix, classes
    for record in counting.values():
        assert record.run_id in page
        assert record.config["dataset"]["sha256"][:16] in page
    assert "Report (CIFAR-100)" in page
    for model, values in REPORT_RESULTS.items():
        assert f"model {model}: fine {values['fine']}%" in page
    focus = rp.focus_run(counting)
    assert focus.label_set == "fine"
    assert focus.metrics["test_top1"] == max(r.metrics["test_top1"] for (_, labels), r
                                             in counting.items() if labels == "fine")


def test_html_report_fits_and_holds_no_machine_paths_or_foreign_settings(records,
                                                                          fixture_runs):
    counting = ra.choose_counting_runs(records)
    page = html_report.build_html_report(records, counting)
    body = page[page.index("<body>"):]
    assert str(fixture_runs) not in body
    for record in records:
        assert record.config["dataset"]["source"] not in body
    assert "search_trials" not in body and "grid_epochs" not in body  # models 1 and 5
    assert "feature_cache" not in body and "freeze_base" not in body  # no backbone either
    # every table sits in a box that scrolls sideways instead of widening the page
    assert body.count("<table") == body.count("<div class='table-wrap'><table")
    assert "overflow-wrap:anywhere" in page
    assert "class_" not in body and "super_" not in body  # names in words...
    assert "super 07" in body  # ...on the superclass matrix too


def test_configuration_shows_the_settings_of_the_runs_own_model(tmp_path, fine1):
    copy = _copy_run(fine1, tmp_path, "20000101-000000-m7-fine")
    config = json.loads((copy / "config.json").read_text())
    config["model"].update(number=7, stem="mobilenet", hyperparameter_search=True)
    config["hyperparameters"]["backbone_weights"] = "/home/someone/w/mobilenet.h5"
    config["backbone_weights"] = {"weights": "/home/someone/w/mobilenet.h5", "sha256": "ab" * 32}
    config["search"] = {"chosen_trial_id": "s2-2", "stage1_trials": 30, "stage2_trials": 8,
                        "chosen_mean_val_accuracy": 0.61}
    (copy / "config.json").write_text(json.dumps(config))
    record = load_run(copy)
    settings = html_report.applicable_settings(record)
    assert settings["search_trials"] == config["hyperparameters"]["search_trials"]
    assert "feature_cache" in settings and "backbone_weights" not in settings
    assert set(html_report.applicable_settings(fine1)) == {"epochs", "batch_size", "patience",
                                                  "learning_rate", "optimizer",
                                                  "validation_fraction"}
    page = html_report.build_html_report([record], {(7, "fine"): record})
    assert "/home/someone" not in page
    assert "mobilenet.h5 (sha256 abababababab)" in page
    assert "30 random-search trials, 8 grid trials, chosen: trial s2-2" in page


def test_html_report_escapes_names_from_run_folders(tmp_path, fine1):
    copy = _copy_run(fine1, tmp_path, "20000101-000000-m1-fine")
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["per_class"][0]["class"] = "<img src=x onerror=alert(1)>"
    config = json.loads((copy / "config.json").read_text())
    config["dataset"]["name"] = "<script>alert(1)</script>"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    (copy / "config.json").write_text(json.dumps(config))
    records = list_runs(tmp_path)
    page = html_report.build_html_report(records, ra.choose_counting_runs(records))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- data status --------------------------------------------------------------------------


def test_data_status_says_what_is_missing_and_where_to_put_it(tiny_cifar100, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("CIFAR_CORE_DATA", raising=False)
    missing = data_status(None)
    assert not missing.found
    assert "cifar-100-python.tar.gz" in missing.help and "CIFAR_CORE_DATA" in missing.help
    assert str(tmp_path / "keras") in missing.help
    found = data_status(str(tiny_cifar100))
    assert found.found and found.location == str(tiny_cifar100)
    gone = data_status(str(tmp_path / "nowhere.tar.gz"))
    assert not gone.found and "nowhere.tar.gz" in gone.help
    monkeypatch.setenv("CIFAR_CORE_DATA", str(tiny_cifar100))
    assert data_status(None).found
