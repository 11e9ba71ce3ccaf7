"""The embedding map: penultimate activations (saved by evaluate(), or computed and cached for
older runs), the 2-D map, neighbours, the figure and TensorBoard's projector files."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import sys
import types

import keras
import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from PIL import Image

from cifar_core.analysis import embedding as ea
from cifar_core.analysis import images as ia
from cifar_core.charts.embedding import (
    ERROR_SYMBOL,
    embedding_figure,
    loading_figure,
    selected_position,
)
from cifar_core.charts.embedding_hover import hover_sprite
from cifar_core.errors import ConfigError, DataError, RunFolderError
from cifar_core.models.builder import build_model, with_test_time_flips
from cifar_core.models.penultimate import (
    CLASSIFIER_LAYER,
    STORED_DIMENSIONS,
    compact,
    penultimate_model,
    with_penultimate,
)
from cifar_core.models.specs import get_spec
from cifar_core.runs.store import EMBEDDING_FILE, list_runs
from cifar_core.training.evaluate import predict_in_two_passes, predict_with_embedding


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _run(artifacts, model: int = 5, labels: str = "fine"):
    return next(r for r in list_runs(artifacts)
                if r.model_number == model and r.label_set == labels)


# --- the activations ------------------------------------------------------------------


@pytest.mark.parametrize("model", [1, 5])
def test_the_classifier_layer_applied_to_the_penultimate_output_gives_the_model(model):
    built = build_model(get_spec(model), 10, seed=3)
    images = _images(16).astype(np.float32)
    activations = penultimate_model(built)(images, training=False)
    again = built.get_layer(CLASSIFIER_LAYER)(activations)
    np.testing.assert_allclose(np.asarray(again), np.asarray(built(images, training=False)),
                               atol=1e-5)


def test_a_flip_averaged_model_has_the_inner_models_activations_and_its_own_answers(
        monkeypatch):
    built = build_model(get_spec(5), 10, seed=3)
    averaged = with_test_time_flips(built)
    images = _images(40)
    passes = []
    real_predict = keras.Model.predict
    monkeypatch.setattr(keras.Model, "predict",
                        lambda self, *a, **k: passes.append(self.name) or real_predict(
                            self, *a, **k))
    probs, embedding = predict_with_embedding(averaged, images, batch_size=16)
    assert passes == [with_penultimate(averaged).name]  # one pass through the images, not two
    _, plain = predict_with_embedding(built, images, batch_size=16)
    np.testing.assert_allclose(probs, np.asarray(averaged(images.astype(np.float32),
                                                          training=False)),
                               atol=1e-5)
    np.testing.assert_array_equal(embedding["vectors"], plain["vectors"])
    assert embedding["vectors"].shape == (40, 64) and embedding["vectors"].dtype == np.float16
    # The one-pass model itself: the wrapper's answers and the inner model's activations.
    floats = images[:12].astype(np.float32)
    answers, activations = with_penultimate(averaged)(floats, training=False)
    np.testing.assert_allclose(np.asarray(answers), np.asarray(averaged(floats, training=False)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(activations),
                               np.asarray(penultimate_model(built)(floats, training=False)),
                               atol=1e-6)
    # The two-pass route gives the same answer.
    two_probs, two_embedding = predict_in_two_passes(averaged, images, batch_size=16)
    np.testing.assert_allclose(two_probs, probs, atol=1e-6)
    np.testing.assert_array_equal(two_embedding["vectors"], embedding["vectors"])


def test_a_model_without_a_classifier_layer_is_evaluated_without_an_embedding():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    probs, embedding = predict_with_embedding(other, _images(5))
    assert probs.shape == (5, 4) and embedding is None
    with pytest.raises(RunFolderError, match="no layer named 'classifier'"):
        penultimate_model(other)


def test_wide_activations_keep_their_distances_in_the_stored_components():
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 900))  # rank 12 in 900 values
    stored, how = compact(wide)
    assert stored.shape == (300, STORED_DIMENSIONS) and stored.dtype == np.float16
    assert how == f"the first {STORED_DIMENSIONS} principal components of 900"

    def distances(x):  # every pair's Euclidean distance, condensed
        from scipy.spatial.distance import pdist

        return pdist(np.asarray(x, dtype=np.float64))

    np.testing.assert_allclose(distances(stored), distances(wide), rtol=2e-3, atol=0.5)
    narrow, how = compact(wide[:, :20])
    np.testing.assert_allclose(narrow, wide[:, :20], rtol=1e-3, atol=1e-2)
    assert how == "the 20 activations"
    np.testing.assert_array_equal(compact(wide)[0], stored)  # the same vectors every time


# --- saved, cached, read back -----------------------------------------------------------


def test_fixture_runs_carry_their_activations_with_one_row_per_test_image(fixture_runs):
    for record in list_runs(fixture_runs):
        found = ea.saved_embedding(record)
        assert found.origin == "saved with the run"
        assert found.vectors.shape[0] == record.metrics["num_test"]
        assert found.vectors.shape[1] == min(found.layer_width, STORED_DIMENSIONS)


def test_a_damaged_or_mismatched_embedding_file_is_refused_in_words(fixture_runs, tmp_path):
    source = _run(fixture_runs)
    shutil.copytree(source.path, tmp_path / "runs" / source.run_id)
    record = _run(tmp_path)
    (record.path / EMBEDDING_FILE).write_bytes(b"not a zip")
    with pytest.raises(RunFolderError, match=r"embedding\.npz: unreadable"):
        ea.saved_embedding(record)
    np.savez(record.path / EMBEDDING_FILE, vectors=np.zeros((3, 4), np.float16),
             layer_width=np.int32(4), stored_as=np.array("x"))
    with pytest.raises(RunFolderError, match="3 vectors for 200 test images"):
        ea.saved_embedding(record)


def test_an_older_run_gets_its_activations_computed_once_and_cached_by_run(
        fixture_runs, tmp_path, tiny_cifar100):
    source = _run(fixture_runs)
    shutil.copytree(source.path, tmp_path / "runs" / source.run_id)
    record = _run(tmp_path)
    (record.path / EMBEDDING_FILE).unlink()  # as a run written before evaluate() saved it
    cache = tmp_path / "cache"
    assert ea.saved_embedding(record, cache) is None
    images = ia.run_dataset(record, fallback_source=str(tiny_cifar100)).x_test
    model = build_model(get_spec(5), 100, seed=1)
    calls = []
    computed = ea.compute_embedding(record, model, images, cache,
                                    on_batch=lambda done, total: calls.append((done, total)))
    assert computed.origin == "computed from the run's model" and calls[-1][0] == calls[-1][1]
    again = ea.saved_embedding(record, cache)
    np.testing.assert_array_equal(again.vectors, computed.vectors)
    assert not (record.path / EMBEDDING_FILE).exists()  # the run folder is left as it was
    # A rewritten predictions file (a retrained run) is another key: nothing stale is read.
    predictions = record.path / "predictions.npz"
    predictions.write_bytes(predictions.read_bytes())
    assert ea.saved_embedding(record, cache) is None
    with pytest.raises(DataError, match="10 test images for a run evaluated on 200"):
        ea.compute_embedding(record, model, images[:10], cache)


# --- the map and the neighbours ---------------------------------------------------------


def test_two_far_groups_fall_apart_on_the_first_component():
    rng = np.random.default_rng(2)
    groups = np.vstack([rng.normal(0, 0.1, (30, 6)), rng.normal(5, 0.1, (30, 6))])
    xy = ea.map_coordinates(groups, "pca")
    assert xy.shape == (60, 2) and xy.dtype == np.float32
    left, right = xy[:30, 0], xy[30:, 0]
    assert left.max() < right.min() or right.max() < left.min()


def test_t_sne_is_seeded_and_unknown_methods_are_refused():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 8))
    first = ea.map_coordinates(vectors, "tsne", seed=5)
    np.testing.assert_array_equal(first, ea.map_coordinates(vectors, "tsne", seed=5))
    with pytest.raises(ConfigError, match="unknown map method 'mds'"):
        ea.map_coordinates(vectors, "mds")
    with pytest.raises(DataError, match="at least 3"):
        ea.map_coordinates(vectors[:2], "pca")


def test_umap_gets_the_seed_and_the_principal_components(monkeypatch):
    """The call into umap-learn, seen through a stand-in module: a real UMAP costs the suite
    about 45 s of numba compilation in a fresh process, for a property of umap-learn's own
    (same random_state, same layout). ``benchmarks/embedding.py`` runs the real UMAP twice on
    a 10,000-image run and fails unless the two maps are identical."""
    calls = []

    class FakeUMAP:
        def __init__(self, **options):
            calls.append(options)

        def fit_transform(self, reduced):
            calls[-1]["input"] = reduced
            return np.arange(2 * len(reduced), dtype=np.float64).reshape(-1, 2)

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    vectors = np.random.default_rng(4).normal(size=(120, 64))
    xy = ea.map_coordinates(vectors, "umap", seed=7)
    (options,) = calls
    assert options["random_state"] == 7 and options["n_components"] == 2
    assert options["n_neighbors"] == 15
    assert options["input"].shape == (120, 50)  # the first 50 principal components
    assert xy.dtype == np.float32 and xy.shape == (120, 2) and xy[3].tolist() == [6, 7]
    ea.map_coordinates(vectors[:5], "umap", seed=7)  # few images: fewer neighbours
    assert calls[-1]["n_neighbors"] == 4 and calls[-1]["input"].shape == (5, 5)


def test_the_map_is_computed_once_per_run_method_and_seed(fixture_runs, tmp_path):
    record = _run(fixture_runs)
    found = ea.saved_embedding(record)
    cache = tmp_path / "cache"
    assert ea.cached_map(record, found, "pca", 0, cache) is None
    xy = ea.run_map(record, found, "pca", 0, cache)
    np.testing.assert_array_equal(ea.cached_map(record, found, "pca", 0, cache), xy)
    assert ea.cached_map(record, found, "pca", 1, cache) is None  # another seed
    assert ea.cached_map(record, found, "tsne", 0, cache) is None


def test_nearest_neighbours_by_direction_closest_first_without_itself():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [10, 0.5]], dtype=np.float32)
    assert ea.nearest_neighbours(vectors, 0, 3) == [4, 1, 2]
    assert ea.nearest_neighbours(vectors, 3, 10) == [2, 1, 4, 0]  # at most the others
    with pytest.raises(DataError, match="out of range"):
        ea.nearest_neighbours(vectors, 5)


def test_the_map_table_names_classes_superclasses_and_errors():
    metrics = {"label_set": "fine", "class_names": ["apple", "maple_tree", "oak_tree"],
               "superclass_names": ["fruit", "trees"], "output_to_superclass": [0, 1, 1]}
    predictions = {"test_index": np.array([0, 1, 2]), "y_true": np.array([0, 1, 2]),
                   "y_pred": np.array([0, 2, 0]),
                   "top_probs": np.array([[0.9], [0.6], [0.5]])}
    table = ea.map_table(np.zeros((3, 2)), predictions, metrics)
    assert list(table["correct"]) == [True, False, False]
    assert list(table["predicted class"]) == ["apple", "oak tree", "apple"]
    assert list(table["true superclass"]) == ["fruit", "trees", "trees"]
    coarse = ea.map_table(np.zeros((3, 2)), predictions, {**metrics, "label_set": "coarse"})
    assert "true superclass" not in coarse
    without = ea.map_table(np.zeros((3, 2)), predictions,  # e.g. CIFAR-10 image folders
                           {"label_set": "fine", "class_names": metrics["class_names"],
                            "superclass_names": None, "output_to_superclass": None})
    assert "true superclass" not in without and list(without["true class"])[1] == "maple tree"
    with pytest.raises(DataError, match="2 map points for 3"):
        ea.map_table(np.zeros((2, 2)), predictions, metrics)


# --- the figure -------------------------------------------------------------------------


def test_the_figure_has_a_group_per_superclass_crosses_for_errors_and_rings(fixture_runs):
    record = _run(fixture_runs)
    table = ea.map_table(np.random.default_rng(0).normal(size=(200, 2)),
                         ia.load_predictions(record.path), record.metrics)
    fig = embedding_figure(table, colour_by="true superclass", run_id=record.run_id,
                           chosen=4, neighbours=[7, 9])
    groups = [t for t in fig.data if t.customdata is not None]
    assert sorted(t.name for t in groups) == sorted(set(table["true superclass"]))
    assert sum(len(t.x) for t in groups) == 200
    for trace in groups:
        rows = table.set_index("position").loc[[int(c[0]) for c in trace.customdata]]
        assert [s == ERROR_SYMBOL for s in trace.marker.symbol] == list(~rows["correct"])
    rings = {t.name: (list(t.x), list(t.y)) for t in fig.data if t.customdata is None}
    assert rings["chosen image"] == ([table.x[4]], [table.y[4]])
    assert rings["its nearest neighbours"][0] == [table.x[7], table.x[9]]
    assert record.run_id in fig.layout.title.text
    assert {t.type for t in fig.data} == {"scattergl"}  # rings too: one layer, above the points
    svg = embedding_figure(table, colour_by="true superclass", chosen=4, neighbours=[7, 9],
                           webgl=False)
    assert {t.type for t in svg.data} == {"scatter"}
    assert [list(t.x) for t in svg.data] == [list(t.x) for t in fig.data]


def test_the_loading_frame_names_the_run_has_the_map_height_and_no_points():
    frame = loading_figure("run-7", height=640)
    assert not frame.data and frame.layout.height == 640
    assert frame.layout.title.text.startswith("Embedding map of run run-7")


def test_with_hover_thumbnails_the_points_keep_their_hover_events_but_lose_the_text_label():
    table = ea.map_table(np.random.default_rng(0).normal(size=(3, 2)), {
        "test_index": np.array([0, 1, 2]), "y_true": np.array([0, 1, 0]),
        "y_pred": np.array([0, 0, 0]), "top_probs": np.array([[0.9], [0.6], [0.5]])},
        {"label_set": "fine", "class_names": ["apple", "pear"]})
    labelled = embedding_figure(table, chosen=1)
    bare = embedding_figure(table, chosen=1, hover_labels=False)
    points = [t for t in bare.data if t.customdata is not None]
    assert all(t.hoverinfo == "none" and t.hovertemplate is None for t in points)  # events fire
    assert all(t.hovertemplate for t in labelled.data if t.customdata is not None)
    assert [t.hoverinfo for t in bare.data if t.customdata is None] == ["skip"]  # the ring
    for with_label, without in zip(labelled.data, bare.data, strict=True):  # clicks read these
        assert with_label.customdata is None or (
            with_label.customdata.tolist() == without.customdata.tolist())


def test_a_click_is_read_from_either_form_streamlit_gives_and_rings_are_ignored():
    assert selected_position([{"customdata": [12, 3, "a", "b", 0.5]}]) == 12
    assert selected_position([{"customdata": {"0": 7, "1": 3}}]) == 7
    assert selected_position([{"x": 1, "y": 2}, {"customdata": [5]}]) == 5
    assert selected_position([]) is None and selected_position(None) is None


# --- TensorBoard's projector ------------------------------------------------------------


def test_the_projector_files_are_what_tensorboard_reads(fixture_runs, tmp_path, tiny_cifar100):
    from tensorboard.plugins.projector import projector_config_pb2
    from tensorboard.plugins.projector.projector_plugin import _read_tensor_tsv_file

    record = _run(fixture_runs)
    found = ea.saved_embedding(record)
    images = ia.run_dataset(record, fallback_source=str(tiny_cifar100)).x_test
    folder = ea.write_projector(tmp_path / "projector", record, found,
                                ia.load_predictions(record.path), images)
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    (entry,) = config.embeddings
    assert record.run_id in entry.tensor_name
    vectors = _read_tensor_tsv_file(str(folder / entry.tensor_path))
    np.testing.assert_allclose(vectors, found.vectors, rtol=1e-3, atol=1e-3)
    metadata = (folder / entry.metadata_path).read_text().splitlines()
    assert metadata[0].split("\t")[:3] == ["test image", "true class", "predicted class"]
    assert len(metadata) == 201 and all(len(row.split("\t")) == len(metadata[0].split("\t"))
                                        for row in metadata)
    sheet = np.asarray(Image.open(folder / entry.sprite.image_path))
    assert list(entry.sprite.single_image_dim) == [32, 32]
    assert sheet.shape == (15 * 32, 15 * 32, 3)  # 200 images: a 15 x 15 grid
    row, column = divmod(17, 15)
    np.testing.assert_array_equal(sheet[row * 32:(row + 1) * 32, column * 32:(column + 1) * 32],
                                  images[17])


# --- the hover thumbnails' sprite ---------------------------------------------------------


def _decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)


def test_the_hover_sprite_holds_each_points_own_test_image_in_its_cell(fixture_runs,
                                                                       tiny_cifar100):
    record = _run(fixture_runs)
    images = ia.run_dataset(record, fallback_source=str(tiny_cifar100)).x_test
    predictions = ia.load_predictions(record.path)
    table = ea.map_table(np.zeros((200, 2)), predictions, record.metrics)
    # Some rows in another order, as the map shows them: the errors only, last first.
    shown = table[~table["correct"]].iloc[::-1]
    found = hover_sprite(shown, images)
    assert found.positions == tuple(shown["position"]) and found.cell == 32
    sheet = _decoded(found.jpeg)
    assert sheet.shape == (found.columns * 32,) * 2 + (3,)
    assert found.columns == math.ceil(math.sqrt(len(shown)))
    for position in found.positions:
        left, top, right, bottom = found.box(position)
        crop = sheet[top:bottom, left:right]
        image = images[predictions["test_index"][position]].astype(int)
        # JPEG is lossy: the crop is close to its own image and closer to it than to any
        # other (the fixture's images are noise around a colour per class, JPEG's worst case:
        # 15 grey levels off on average at most, against 18 for the nearest other image).
        errors = np.abs(images.astype(int) - crop).mean(axis=(1, 2, 3))
        assert np.abs(crop - image).mean() < 17
        assert int(np.argmin(errors)) == predictions["test_index"][position]
    with pytest.raises(DataError, match="not in the hover sprite"):
        found.box(int(table[table["correct"]]["position"].iloc[0]))


def test_the_hover_sprite_is_sent_as_json_the_components_script_reads():
    images = _images(10, seed=5)
    table = pd.DataFrame({"position": [4, 0, 2], "test image": [9, 3, 5]})
    found = hover_sprite(table, images)
    data = json.loads(json.dumps(found.component_data()))  # what the browser receives
    assert data["sprite"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(data["sprite"].split(",", 1)[1]) == found.jpeg
    assert data["positions"] == [4, 0, 2] and data["columns"] == 2 and data["cell"] == 32
    assert data["cell"] * data["scale"] == 96  # the thumbnail's side in px
    assert found.box(2) == (0, 32, 32, 64)  # the third cell: second row, first column
    with pytest.raises(DataError, match="test image 12 is out of range"):
        hover_sprite(pd.DataFrame({"position": [0], "test image": [12]}), images)
    with pytest.raises(DataError, match="no map points"):
        hover_sprite(table.iloc[:0], images)
