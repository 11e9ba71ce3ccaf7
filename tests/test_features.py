"""The backbone feature cache and frozen-base training through it (issue 3)."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from cifar_archives import write_cifar100_archive
from conftest import SHARED_WEIGHTS_V1, require_shared

from cifar_core.data import load_dataset
from cifar_core.features import (
    FlipBatches,
    FlipSampler,
    feature_extractor,
    flip_images,
    load_or_build_features,
)
from cifar_core.models.builder import build_model
from cifar_core.models.specs import get_spec
from cifar_core.pipeline import execute_run
from cifar_core.training.config import make_config
from cifar_core.training.seeding import set_global_seed

FROZEN = get_spec(6).changed(net={"freeze_backbone": True})


def _extractor(spec=FROZEN, weights=None, seed=42):
    set_global_seed(seed)
    return feature_extractor(build_model(spec, 100, backbone_weights=weights, seed=seed))


def test_flip_variants_are_identity_horizontal_vertical_both():
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    assert np.array_equal(flip_images(images, 0), images)
    assert np.array_equal(flip_images(images, 1), images[:, :, ::-1])
    assert np.array_equal(flip_images(images, 2), images[:, ::-1])
    assert np.array_equal(flip_images(images, 3), images[:, ::-1, ::-1])
    mixed = flip_images(images, np.array([3, 0, 1]))
    assert np.array_equal(mixed[0], images[0, ::-1, ::-1])
    assert np.array_equal(mixed[1], images[1])
    assert np.array_equal(mixed[2], images[2, :, ::-1])


def test_flip_sampler_is_seeded_uniform_and_new_each_epoch():
    sampler = FlipSampler(40_000, seed=5)
    order, variants = sampler.epoch(0)
    assert np.array_equal(np.sort(order), np.arange(40_000))
    assert np.allclose(np.bincount(variants, minlength=4) / 40_000, 0.25, atol=0.01)
    again_order, again_variants = FlipSampler(40_000, seed=5).epoch(0)
    assert np.array_equal(order, again_order) and np.array_equal(variants, again_variants)
    next_order, next_variants = sampler.epoch(1)
    assert not np.array_equal(order, next_order)
    assert np.mean(variants == next_variants) < 0.5  # drawn afresh, not reused


@pytest.mark.shared
class _Numbered:
    """A source whose input for (row, variant) is the number 10 * row + variant."""

    def batch(self, rows, variants, shifts=None, cutout=None):
        return (10 * np.asarray(rows) + np.asarray(variants)).astype("float32")[:, None]

    def plain(self, rows):
        return (10 * np.asarray(rows)).astype("float32")[:, None]


def test_flip_batches_are_each_epochs_seeded_draw_in_batches():
    """fit's input: epoch after epoch, the sampler's order and variants, in batches of the
    batch size with a short last one."""
    rows = np.arange(100, 123)  # 23 images: batches of 5, 5, 5, 5, 3
    labels = rows % 3
    sampler = FlipSampler(len(rows), seed=4, num_variants=2)
    batches = FlipBatches(_Numbered(), rows, labels, batch_size=5, seed=4, num_variants=2)
    assert batches.num_batches == 5
    for epoch in range(3):
        order, variants = sampler.epoch(epoch)
        taken = [batches[i] for i in range(batches.num_batches)]
        assert [len(y) for _, y in taken] == [5, 5, 5, 5, 3]
        np.testing.assert_array_equal(np.concatenate([x[:, 0] for x, _ in taken]),
                                      10 * rows[order] + variants)
        np.testing.assert_array_equal(np.concatenate([y for _, y in taken]), labels[order])
        batches.on_epoch_end()
    assert not np.array_equal(sampler.epoch(0)[0], sampler.epoch(1)[0])


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
def test_cached_features_are_the_frozen_base_applied_to_each_flip(small_dataset, tmp_path):
    weights = str(require_shared(SHARED_WEIGHTS_V1))
    extractor = _extractor(weights=weights)
    progress = []
    cache = load_or_build_features(extractor, FROZEN, small_dataset, cache_dir=tmp_path,
                                   weights=weights, show_progress=False,
                                   on_progress=lambda done, total: progress.append(
                                       (done, total)))
    assert cache.built and cache.feature_shape == (1, 1, 1024)
    assert progress[-1][0] == progress[-1][1] == 4 * (200 + 100)
    picks = np.array([0, 7, 199])
    for variant in range(4):
        flipped = flip_images(small_dataset.x_train[picks], variant).astype(np.float32)
        expected = np.asarray(extractor(flipped, training=False))
        assert np.allclose(cache.train[variant, picks], expected, atol=1e-4)
    expected_test = np.asarray(extractor(
        flip_images(small_dataset.x_test[:2], 3).astype(np.float32), training=False))
    assert np.allclose(cache.test[3, :2], expected_test, atol=1e-4)
    assert not np.allclose(cache.train[0, picks], cache.train[1, picks])  # flips matter


@pytest.mark.slow  # runs MobileNet over the data five times (about 10 s)
def test_a_cache_is_reused_only_for_the_same_weights_input_size_and_data(small_dataset,
                                                                         tmp_path):
    def build(extractor, spec=FROZEN, dataset=small_dataset):
        return load_or_build_features(extractor, spec, dataset, cache_dir=tmp_path,
                                      show_progress=False)

    first = build(_extractor())
    assert first.built
    again = build(_extractor())  # same seed: the same random weights
    assert not again.built and again.path == first.path
    other_weights = build(_extractor(seed=7))
    assert other_weights.built and other_weights.path != first.path
    larger = FROZEN.changed(net={"input_size": 40})
    other_size = build(_extractor(spec=larger), spec=larger)
    assert other_size.built and other_size.path not in (first.path, other_weights.path)
    other_data = load_dataset(write_cifar100_archive(
        tmp_path / "other.tar.gz", train_per_class=2, test_per_class=1, seed=9))
    moved = build(_extractor(), dataset=other_data)
    assert moved.built and moved.path != first.path
    assert len({p.name for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(
        "mobilenet")}) == 0  # everything lives under <cache>/features
    stored = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert len(stored) == 4 and not any(name.startswith(".tmp") for name in stored)

    # A folder with the right name but built for something else is not trusted.
    meta_file = first.path / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["key"]["data_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    rebuilt = build(_extractor())
    assert rebuilt.built and rebuilt.path == first.path
    assert json.loads(meta_file.read_text())["key"]["data_sha256"] == \
        small_dataset.content_hash


def _history(path):
    with open(path / "history.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.shared
def test_frozen_run_through_the_cache_matches_the_same_run_end_to_end(tiny_cifar100, tmp_path):
    weights = str(require_shared(SHARED_WEIGHTS_V1))
    dataset = load_dataset(tiny_cifar100)
    runs = {}
    for cached in (True, False):
        config = make_config(6, profile="quick", epochs=2, batch_size=32, freeze_base=True,
                             backbone_weights=weights, feature_cache=cached)
        runs[cached] = execute_run(config, dataset=dataset, artifacts=str(tmp_path),
                                   log=lambda _: None).path
    cached_history, end_to_end_history = _history(runs[True]), _history(runs[False])
    assert len(cached_history) == len(end_to_end_history) == 2
    for a, b in zip(cached_history, end_to_end_history, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert cached_history[-1]["loss"] < cached_history[0]["loss"]  # it did learn
    metrics = {k: json.loads((p / "metrics.json").read_text()) for k, p in runs.items()}
    for key in ("test_top1", "test_top5", "test_superclass_top1"):
        assert metrics[True][key] == pytest.approx(metrics[False][key], abs=1e-9), key
    assert metrics[True]["confusion"] == metrics[False]["confusion"]
    assert metrics[True]["training"]["feature_cache"]["path"]
    assert metrics[False]["training"]["feature_cache"] is None

    # The saved model is the end-to-end network: raw images in, build_model's layers.
    model = keras.models.load_model(runs[True] / "model.keras", safe_mode=True)
    reference = build_model(FROZEN, 100, backbone_weights=weights)
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    base = "mobilenet_1.00_32"
    assert all(np.array_equal(a, b) for a, b in zip(
        model.get_layer(base).get_weights(), reference.get_layer(base).get_weights(),
        strict=True))  # frozen: the base is the pretrained one
    predictions = np.load(runs[True] / "predictions.npz")
    probs = model.predict(dataset.x_test[:8], verbose=0)
    assert np.array_equal(probs.argmax(axis=1), predictions["y_pred"][:8])
