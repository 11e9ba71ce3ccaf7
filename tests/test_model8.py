"""Model 8 (issue 5): MobileNet at 144 px, block 6's 1x1 and blocks 7-13 fine-tuned on cached
maps of each image and its mirror image, an average-pooled head, test-time mirror averaging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS_V1, require_shared

from cifar_core.errors import ConfigError
from cifar_core.features import (
    CachedSource,
    FlipSampler,
    ImageSource,
    base_layer,
    cache_key,
    cut_layer,
    cut_out,
    feature_extractor,
    head_model,
    translate,
)
from cifar_core.inference import load_model_safely
from cifar_core.models.builder import build_model, make_optimizer, with_test_time_flips
from cifar_core.models.specs import get_spec
from cifar_core.pipeline import execute_run
from cifar_core.training.config import make_config
from cifar_core.training.on_features import _validate_weight_average, fit_on_features

SPEC = get_spec(8)
BASE = "mobilenet_1.00_144"
# The layers of the base that train: the cut is inside block 6, after its depthwise convolution
FINE_TUNED = {"conv_pw_6"} | {f"conv_{kind}_{block}" for block in range(7, 14)
                              for kind in ("dw", "pw")}


@pytest.fixture(scope="module")
def model8():
    return build_model(SPEC, 10, backbone_weights=None, seed=3)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def test_model8_is_mirror_flips_upsample_base_average_pool_head(model8):
    names = [layer.name for layer in model8.layers]
    assert names == ["image", "augment_flips", "mobilenet_preprocess", "upsample", BASE,
                     "average_pool", "dropout_features", "classifier"]
    flips = model8.get_layer("augment_flips")
    assert [layer.name for layer in flips.layers] == ["flip_horizontal"]  # no upside-down
    assert model8.get_layer("upsample").output.shape[1:3] == (144, 144)


def test_only_block_6s_1x1_and_blocks_7_to_13_train_and_batch_norm_stays_frozen(model8):
    base = model8.get_layer(BASE)
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == FINE_TUNED
    assert not any(layer.trainable for layer in base.layers
                   if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
def test_cached_maps_through_the_upper_part_give_the_full_models_output(model8):
    cut = cut_layer(SPEC)
    assert cut == "conv_dw_6_relu"
    extractor, upper = feature_extractor(model8, cut), head_model(model8, cut)
    assert extractor.output_shape[1:] == (9, 9, 256)
    x = _images(3)
    np.testing.assert_allclose(upper.predict(extractor.predict(x, verbose=0), verbose=0),
                               model8.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # The upper part shares the model's weights: training it trains the model.
    upper_weights = {id(w) for w in upper.trainable_weights}
    assert upper_weights <= {id(w) for w in model8.weights}
    assert len(upper.trainable_weights) == len(model8.trainable_weights)


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_test_time_flips_average_the_image_and_its_mirror_and_load_safely(model8, tmp_path):
    wrapped = with_test_time_flips(model8)
    x = _images(4, seed=1)
    expected = (model8.predict(x, verbose=0) + model8.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    wrapped.save(tmp_path / "model.keras")
    loaded = load_model_safely(tmp_path / "model.keras")  # safe mode: no code in the file
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # A fresh process that only imports the inference module (as predict and the dashboard
    # do) loads it too: the project's layers are registered on import.
    script = ("import sys; from cifar_core.inference import load_model_safely; "
              "print(load_model_safely(sys.argv[1]).output_shape)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "(None, 10)" in done.stdout, done.stderr[-2000:]


def test_two_variant_sampler_draws_only_identity_and_mirror():
    order, variants = FlipSampler(10_000, seed=2, num_variants=2).epoch(0)
    assert sorted(order) == list(range(10_000))
    assert set(np.unique(variants)) == {0, 1}
    assert 4_700 < int(np.sum(variants == 1)) < 5_300


def test_translate_moves_each_map_by_its_own_shift_and_fills_zeros():
    maps = np.arange(2 * 4 * 4 * 3, dtype="float16").reshape(2, 4, 4, 3) + 1
    shifts = np.array([[1, 0], [-1, 1]])  # first: one cell down; second: up and right
    out = translate(maps, shifts)
    assert out.dtype == maps.dtype and out.shape == maps.shape
    np.testing.assert_array_equal(out[0, 1:], maps[0, :-1])
    assert not out[0, 0].any()
    np.testing.assert_array_equal(out[1, :-1, 1:], maps[1, 1:, :-1])
    assert not out[1, -1].any() and not out[1, :, 0].any()
    np.testing.assert_array_equal(translate(maps, np.array([[0, 0], [0, 1]]))[0], maps[0])
    assert translate(maps, np.zeros((2, 2), int)) is maps  # nothing moves: no copy


def test_shifts_are_seeded_uniform_and_leave_order_and_flips_alone():
    sampler = FlipSampler(9_000, seed=4, num_variants=2)
    shifts = sampler.shifts(0, 1)
    np.testing.assert_array_equal(shifts, FlipSampler(9_000, seed=4).shifts(0, 1))
    assert not np.array_equal(shifts, sampler.shifts(1, 1))
    pairs, counts = np.unique(shifts, axis=0, return_counts=True)
    assert len(pairs) == 9 and counts.min() > 850  # all nine shifts, about 1,000 each
    np.testing.assert_array_equal(sampler.epoch(0)[0], FlipSampler(9_000, 4, 2).epoch(0)[0])


def test_both_sources_apply_the_shift_images_in_pixels_per_cell():
    images = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    rows, variants, shifts = np.array([2, 0]), np.array([0, 1]), np.array([[0, 1], [1, 0]])
    shifted = ImageSource(images, pixels_per_cell=4).batch(rows, variants, shifts)
    np.testing.assert_array_equal(shifted[0, :, 4:], images[2, :, :-4])  # 4 px right
    np.testing.assert_array_equal(shifted[1, 4:], images[0, :-4, ::-1])  # mirrored, 4 px down
    assert not shifted[0, :, :4].any()
    assert shifted.dtype == np.uint8  # stored dtype: the training graph casts (fewer bytes)
    # A cell that is not a whole number of pixels (an 18x18 map of a 32-px image: 1.78 px):
    # each move is rounded to the nearest pixel, 2 cells to 4 px, 1 cell to 2 px.
    finer = ImageSource(images, pixels_per_cell=32 / 18).batch(
        rows, variants, np.array([[0, 2], [-1, 0]]))
    np.testing.assert_array_equal(finer[0, :, 4:], images[2, :, :-4])
    np.testing.assert_array_equal(finer[1, :-2], images[0, 2:, ::-1])  # mirrored, 2 px up
    assert not finer[1, -2:].any()

    class Cache:  # the one attribute CachedSource reads: maps by (variant, row)
        train = np.random.default_rng(6).normal(size=(2, 3, 8, 8, 4)).astype("float16")
    maps = CachedSource(Cache()).batch(rows, variants, shifts)
    np.testing.assert_array_equal(maps[1, 1:], Cache.train[1, 0, :-1])
    assert maps.dtype == np.float16
    np.testing.assert_array_equal(CachedSource(Cache()).batch(rows, variants),
                                  Cache.train[variants, rows])


def test_cache_key_names_the_cut_the_two_variants_and_float16(model8, small_dataset):
    key = cache_key(SPEC, feature_extractor(model8, cut_layer(SPEC)), small_dataset)
    assert (key["cut"], key["variants"], key["dtype"]) == (
        "conv_dw_6_relu", ["identity", "horizontal"], "float16")
    whole = cache_key(SPEC.changed(net={"freeze_backbone": True}), feature_extractor(model8),
                      small_dataset)
    assert (whole["cut"], whole["dtype"]) == (None, "float32")


def test_seed_profile_uses_model8s_own_budget_and_overrides_win():
    config = make_config(8)
    assert (config.epochs, config.batch_size, config.learning_rate) == (15, 128, 3e-4)
    assert config.patience == 0  # the cosine schedule runs its course
    assert config.validation_fraction == 0.1  # 45,000 of 50,000 images train
    assert make_config(6).patience == 3
    assert make_config(6).validation_fraction == 0.2  # the report's split
    assert make_config(8, profile="quick").validation_fraction == 0.2
    assert make_config(8, validation_fraction=0.3).validation_fraction == 0.3
    assert make_config(8, profile="quick").epochs == 3
    assert make_config(8, epochs=2, batch_size=32).batch_size == 32
    assert make_config(6).epochs == 50  # the report's models keep the report's protocol
    with pytest.raises(ConfigError, match="warms its head up itself"):
        make_config(8, warm_start=True)


@pytest.mark.slow
@pytest.mark.shared
def test_a_model8_run_warms_up_trains_the_top_and_saves_a_raw_image_classifier(
        small_dataset, tmp_path, monkeypatch):
    from cifar_core.models import specs

    weights = str(require_shared(SHARED_WEIGHTS_V1))
    monkeypatch.setitem(specs.SPECS, 8, SPEC.changed(recipe={"weight_ema": 0.99}))  # the option, on
    dataset = small_dataset  # 200 images: every image runs through MobileNet at 144x144
    # half for validation: a stratified split needs a validation image of each of 100 classes
    config = make_config(8, profile="quick", epochs=2, batch_size=64, patience=0,
                         validation_fraction=0.5, backbone_weights=weights)
    lines = []
    run = execute_run(config, dataset=dataset, artifacts=str(tmp_path), log=lines.append).path
    assert any(line.startswith("head warm-up done in") for line in lines), lines
    metrics = json.loads((run / "metrics.json").read_text())
    training = metrics["training"]
    assert training["head_warmup"]["epochs"] == 1
    assert "conv_dw_6_relu" in Path(training["feature_cache"]["path"]).name
    assert training["epochs_run"] == 2
    # No early stopping: the saved weights are the moving average, validated as such.
    averaged = training["weight_ema"]
    assert averaged["momentum"] == pytest.approx(0.99)
    assert 0 <= averaged["val_accuracy"] <= 1 and 0 <= averaged["last_weights_val_accuracy"] <= 1
    assert any(line.startswith("weights averaged (EMA") for line in lines), lines
    model = load_model_safely(run / "model.keras")
    top_block = base_layer(model.get_layer("model_8")).get_layer("conv_pw_13")
    assert training["finetune_precision"] == top_block.dtype_policy.name
    assert model.input_shape[1:] == (32, 32, 3)
    assert {"mirror_image", "model_8", "mean_of_both"} <= {layer.name for layer in model.layers}
    probabilities = model.predict(dataset.x_test[:8].astype("float32"), verbose=0)
    assert probabilities.shape == (8, 100)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # Only the layers above the cut moved; the frozen lower base kept the pretrained weights.
    reference = build_model(SPEC, 100, backbone_weights=weights)
    trained_base = base_layer(model.get_layer("model_8"))
    for layer in reference.get_layer(BASE).layers:
        if not layer.weights:
            continue
        same = all(np.array_equal(a, b) for a, b in zip(
            layer.get_weights(), trained_base.get_layer(layer.name).get_weights(), strict=True))
        if layer.name not in FINE_TUNED:  # batch norms included: folded, never trained
            assert same, layer.name
        else:
            assert not same, layer.name


class _FeatureRows:
    """A training source of fixed feature rows (no flips, no shifts): what ``fit_on_features``
    reads from a cache, for a head small enough to train in milliseconds."""

    def __init__(self, features: np.ndarray):
        self.features = features

    def batch(self, rows, variants, shifts=None, cutout=None):
        return self.features[rows]

    def plain(self, rows):
        return self.features[rows]


def _train_small_head(weight_ema: float, initial: list | None = None):
    rng = np.random.default_rng(7)
    features = rng.normal(size=(300, 6)).astype("float32")
    labels = (features[:, 0] > 0).astype("int64") + (features[:, 1] > 0)
    head = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    if initial is not None:
        head.set_weights(initial)
    data = {"source": _FeatureRows(features), "train_rows": np.arange(240),
            "y_train": labels[:240], "val_rows": np.arange(240, 300), "y_val": labels[240:],
            "seed": 3, "batch_size": 20, "num_variants": 1}
    optimizer = make_optimizer("adam", 0.05, weight_ema)
    last_step = _LastStepWeights()
    fit_on_features(head, epochs=3, optimizer=optimizer, callbacks=[last_step], **data)
    return head, optimizer, data, last_step.weights


class _LastStepWeights(keras.callbacks.Callback):
    """The weights after the last optimizer step (``fit`` puts an average in place after the
    last epoch's callbacks)."""

    def on_epoch_end(self, epoch, logs=None):
        self.weights = [w.numpy() for w in self.model.weights]


@pytest.mark.slow  # trains a small head three times
def test_the_weight_average_replaces_the_last_weights_and_is_validated():
    plain, *_ = _train_small_head(0.0)
    initial = [w.numpy() for w in plain.weights]
    plain, _, _, plain_last = _train_small_head(0.0, initial)
    last = [w.numpy() for w in plain.weights]
    for got, want in zip(last, plain_last, strict=True):  # no average: the last step's
        np.testing.assert_array_equal(got, want)
    averaged, optimizer, data, averaged_last = _train_small_head(0.9, initial)
    # Keeping the average does not change the training itself...
    for got, want in zip(averaged_last, last, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    summary = _validate_weight_average(optimizer, averaged, data, {"val_accuracy": 0.5})
    # ...the saved weights are the average, not the last step's, and what is recorded is
    # the validation of those weights.
    assert not np.allclose(averaged.weights[0].numpy(), last[0], atol=1e-3)
    assert summary["momentum"] == pytest.approx(0.9)
    assert summary["last_weights_val_accuracy"] == 0.5
    probs = averaged.predict(data["source"].plain(data["val_rows"]), verbose=0)
    assert summary["val_accuracy"] == pytest.approx(np.mean(probs.argmax(1) == data["y_val"]))


def test_weight_average_momentum_outside_zero_to_one_is_refused():
    assert make_optimizer("adam", 1e-3, 0.99).use_ema
    assert not make_optimizer("adam", 1e-3).use_ema
    with pytest.raises(ConfigError, match="weight EMA momentum"):
        make_optimizer("adam", 1e-3, 1.0)


def test_cut_out_zeroes_one_clipped_window_per_map_and_keeps_the_rest():
    maps = np.ones((3, 9, 9, 2), dtype="float16")
    centers = np.array([[0.5, 0.5], [0.0, 0.0], [0.99, 0.3]])  # middle, corner, bottom edge
    out = cut_out(maps, centers, 3)
    assert out.dtype == maps.dtype and out.shape == maps.shape
    assert not out[0, 3:6, 3:6].any() and out[0].sum() == (81 - 9) * 2  # cell 4 +- 1
    assert not out[1, :2, :2].any() and out[1].sum() == (81 - 4) * 2  # clipped at the corner
    assert not out[2, 7:, 1:4].any() and out[2].sum() == (81 - 6) * 2  # row 8 +- 1, col 2 +- 1
    assert maps.all()  # the input is left as it was


def test_cutout_centres_are_a_seeded_stream_of_their_own_in_both_sources():
    sampler = FlipSampler(500, seed=9, num_variants=2)
    centers = sampler.cutout_centers(0)
    assert centers.shape == (500, 2) and centers.min() >= 0 and centers.max() < 1
    np.testing.assert_array_equal(centers, FlipSampler(500, 9).cutout_centers(0))
    assert not np.array_equal(centers, sampler.cutout_centers(1))
    np.testing.assert_array_equal(sampler.shifts(0, 1), FlipSampler(500, 9).shifts(0, 1))
    images = np.full((1, 32, 32, 3), 200, dtype="uint8")
    middle = np.array([[0.5, 0.5]])
    out = ImageSource(images, pixels_per_cell=4).batch(np.array([0]), np.array([0]),
                                                       cutout=(middle, 2))
    assert not out[0, 12:20, 12:20].any() and (out[0] == 0).sum() == 8 * 8 * 3  # 2 cells of 4 px

    class Cache:
        train = np.ones((2, 1, 9, 9, 4), dtype="float16")
    maps = CachedSource(Cache()).batch(np.array([0]), np.array([1]), cutout=(middle, 3))
    assert (maps[0] == 0).sum() == 9 * 4


@pytest.mark.slow  # trains (one fit on a few maps)
def test_training_with_cutout_sees_maps_with_a_hole():
    seen = []

    class Recording(_FeatureRows):
        def batch(self, rows, variants, shifts=None, cutout=None):
            maps = cut_out(self.features[rows], *cutout)
            seen.append(maps)
            return maps

    features = np.ones((40, 5, 5, 2), dtype="float32")
    head = keras.Sequential([keras.Input((5, 5, 2)), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(2, activation="softmax")])
    fit_on_features(head, source=Recording(features), train_rows=np.arange(40),
                    y_train=np.arange(40) % 2, val_rows=None, y_val=None, epochs=1,
                    batch_size=10, optimizer=make_optimizer("adam", 1e-2), seed=1,
                    num_variants=1, cutout=2)
    maps = np.concatenate(seen)  # every batch read (Keras also reads some to learn shapes)
    assert len(maps) >= 40
    zeros = (maps == 0).sum(axis=(1, 2, 3))
    assert zeros.min() >= 2 and zeros.max() == 2 * 2 * 2  # a corner cell at least, 2x2 inside
