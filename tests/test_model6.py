"""Model 6 as issue 3 describes it: flips -> [-1, 1] -> MobileNet (inference-mode batch norm,
fine-tuned or frozen) -> Flatten -> the head of models 2-4 -> softmax."""

from __future__ import annotations

import json
from collections import Counter

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS_V1, require_shared

from cifar_core.errors import ConfigError
from cifar_core.features import flip_images
from cifar_core.models.builder import build_model, compile_model, flip_augmentation
from cifar_core.models.specs import get_spec
from cifar_core.pipeline import execute_run
from cifar_core.training.config import make_config
from cifar_core.training.train import copy_head

BASE = "mobilenet_1.00_32"


def test_flip_augmentation_draws_the_four_flips_equally_often():
    probe = np.arange(2 * 2 * 1, dtype=np.float32).reshape(1, 2, 2, 1)
    batch = np.repeat(probe, 4000, axis=0)
    flipped = np.asarray(flip_augmentation(seed=3)(batch, training=True))
    variants = {tuple(flip_images(probe, v).ravel()): v for v in range(4)}
    counts = Counter(variants[tuple(image.ravel())] for image in flipped)
    assert set(counts) == {0, 1, 2, 3}  # identity, horizontal, vertical, both
    assert all(850 < counts[v] < 1150 for v in range(4)), counts
    inference = np.asarray(flip_augmentation(seed=3)(batch, training=False))
    assert np.array_equal(inference, batch)


def test_model6_is_flips_preprocess_base_flatten_head():
    model = build_model(get_spec(6), 100, backbone_weights=None, seed=1)
    names = [layer.name for layer in model.layers]
    assert names == ["image", "augment_flips", "mobilenet_preprocess", BASE, "flatten",
                     "hidden_1", "dropout_1", "hidden_2", "dropout_2", "classifier"]
    preprocess = model.get_layer("mobilenet_preprocess")
    assert np.allclose(np.asarray(preprocess(np.array([0.0, 127.5, 255.0]))), [-1, 0, 1])
    assert model.get_layer(BASE).output.shape[1:] == (1, 1, 1024)  # 32x32 in, no resizing
    assert model.get_layer(BASE).trainable
    assert model.get_layer("classifier").activation.__name__ == "softmax"


@pytest.mark.slow
@pytest.mark.shared
def test_fine_tuning_updates_the_base_but_keeps_batch_norm_in_inference_mode():
    """A fit step moves the base's conv weights, never its batch-norm statistics (the
    pretrained weights: a random-init MobileNet in inference mode passes no gradient)."""
    weights = require_shared(SHARED_WEIGHTS_V1)
    model = build_model(get_spec(6), 10, backbone_weights=str(weights), seed=1)
    compile_model(model, optimizer="adam", learning_rate=1e-2)
    base = model.get_layer(BASE)
    conv = base.get_layer("conv1").kernel
    bn = base.get_layer("conv1_bn")
    value = keras.ops.convert_to_numpy
    before = (value(conv), value(bn.moving_mean), value(bn.moving_variance))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(16, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(16) % 10, epochs=1, batch_size=16, verbose=0)
    assert not np.allclose(value(conv), before[0])  # fine-tuned
    assert np.array_equal(value(bn.moving_mean), before[1])
    assert np.array_equal(value(bn.moving_variance), before[2])


def test_frozen_variant_changes_nothing_but_trainability():
    frozen = build_model(get_spec(6).changed(net={"freeze_backbone": True}), 100,
                         backbone_weights=None, seed=1)
    tuned = build_model(get_spec(6), 100, backbone_weights=None, seed=1)
    assert [layer.name for layer in frozen.layers] == [layer.name for layer in tuned.layers]
    assert not frozen.get_layer(BASE).trainable
    head = sum(int(np.prod(w.shape)) for w in frozen.trainable_weights)
    assert head == 1024 * 128 + 128 + 128 * 64 + 64 + 64 * 100 + 100


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
@pytest.mark.shared
def test_saved_model6_with_the_shared_weights_takes_raw_images(tmp_path):
    weights = require_shared(SHARED_WEIGHTS_V1)
    model = build_model(get_spec(6), 10, backbone_weights=str(weights), seed=1)
    reference = keras.applications.MobileNet(input_shape=(32, 32, 3), include_top=False,
                                             weights=str(weights))
    assert np.array_equal(model.get_layer(BASE).get_layer("conv1").get_weights()[0],
                          reference.get_layer("conv1").get_weights()[0])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    assert np.allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0),
                       atol=1e-6)


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
def test_copy_head_moves_the_head_and_leaves_the_base():
    source = build_model(get_spec(6), 10, backbone_weights=None, seed=1)
    target = build_model(get_spec(6), 10, backbone_weights=None, seed=2)
    base_before = [w.copy() for w in target.get_layer(BASE).get_weights()]
    copy_head(source, target)
    for name in ("hidden_1", "hidden_2", "classifier"):
        for a, b in zip(source.get_layer(name).get_weights(),
                        target.get_layer(name).get_weights(), strict=True):
            assert np.array_equal(a, b), name
    assert all(np.array_equal(a, b) for a, b in zip(
        base_before, target.get_layer(BASE).get_weights(), strict=True))


def test_warm_start_is_refused_where_no_base_is_fine_tuned():
    with pytest.raises(ConfigError, match="--warm-start"):
        make_config(5, warm_start=True)
    with pytest.raises(ConfigError, match="--freeze-base"):
        make_config(6, warm_start=True, freeze_base=True)


@pytest.mark.slow
@pytest.mark.shared
def test_warm_start_trains_the_head_on_cached_features_then_fine_tunes(small_dataset, tmp_path):
    """The head phase runs on the feature cache and is recorded; its time counts in the run's
    training time; a run without --warm-start has no such phase."""
    weights = str(require_shared(SHARED_WEIGHTS_V1))
    dataset = small_dataset
    runs = {}
    for warm in (True, False):
        config = make_config(6, profile="quick", epochs=1, batch_size=32,
                             validation_fraction=0.5, backbone_weights=weights,
                             warm_start=warm or None)
        runs[warm] = json.loads((execute_run(config, dataset=dataset, artifacts=str(tmp_path),
                                             log=lambda _: None).path
                                 / "metrics.json").read_text())["training"]
    warm_phase = runs[True]["warm_start"]
    assert warm_phase["epochs_run"] >= 1 and warm_phase["feature_cache"]["path"]
    assert "warm_start" not in runs[False]
    assert runs[True]["training_seconds"] > warm_phase["seconds"]
