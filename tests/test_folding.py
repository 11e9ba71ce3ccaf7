"""Folding batch norm into a base (model 8's fast base: float32 up to the cut, the machine's
precision above it), and label smoothing in the features loop."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_core.errors import ConfigError
from cifar_core.models.backbone import fold_batch_norm
from cifar_core.models.builder import build_model, finetune_precision
from cifar_core.models.specs import get_spec
from cifar_core.training.config import make_config
from cifar_core.training.objective import objective

CASES = {  # backbone: (application, cut)
    "mobilenet_v1": (keras.applications.MobileNet, "conv_pw_6_relu"),
    "mobilenet_v2": (keras.applications.MobileNetV2, "block_12_add"),
}


def _base_with_real_batch_norm(application) -> keras.Model:
    """A small random base whose batch norms really transform (scale != 1, mean != 0), so a
    wrong fold shows; the shared weights' batch norms are almost identities."""
    base = application(input_shape=(64, 64, 3), include_top=False, weights=None)
    rng = np.random.default_rng(0)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2.0, gamma.shape), rng.normal(size=beta.shape),
                               rng.normal(scale=0.1, size=mean.shape),
                               rng.uniform(0.5, 2.0, variance.shape)])
    return base


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
@pytest.mark.parametrize("backbone", sorted(CASES))
def test_folding_keeps_the_function_and_removes_every_batch_norm(backbone):
    application, cut = CASES[backbone]
    base = _base_with_real_batch_norm(application)
    folded = fold_batch_norm(base, cut)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(base(x, training=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x, training=False)), expected,
                               rtol=1e-4, atol=1e-4)
    below = keras.Model(folded.input, folded.get_layer(cut).output)  # the cached cut's maps
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(below(x)),
        keras.ops.convert_to_numpy(keras.Model(base.input, base.get_layer(cut).output)(x)),
        rtol=1e-4, atol=1e-4)

    assert folded.name == base.name
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    pointwise = [layer for layer in folded.layers if isinstance(layer, keras.layers.Dense)]
    assert pointwise and all(layer.use_bias for layer in pointwise)
    depthwise = [layer for layer in folded.layers
                 if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert depthwise and all(layer.use_bias for layer in depthwise)
    assert [type(layer) for layer in folded.layers if type(layer) is keras.layers.Conv2D] == [
        keras.layers.Conv2D]  # only the stem's 3x3 convolution stays a convolution
    assert cut in [layer.name for layer in folded.layers]


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
def test_folded_layers_compute_in_the_chosen_precision_with_float32_weights():
    application, cut = CASES["mobilenet_v1"]
    base = _base_with_real_batch_norm(application)
    folded = fold_batch_norm(base, cut, dtype="mixed_bfloat16")
    layer = folded.get_layer("conv_pw_13")
    assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    # Depthwise gradients are far slower in bfloat16 on the CPU: they stay float32.
    assert folded.get_layer("conv_dw_12").compute_dtype == "float32"
    # The cached part computes in float32, whatever the fine-tuned part does.
    assert folded.get_layer(cut).compute_dtype == "float32"
    assert folded.get_layer("conv_pw_6").compute_dtype == "float32"
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(base(x, training=False))
    got = keras.ops.convert_to_numpy(keras.ops.cast(folded(x, training=False), "float32"))
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()  # bfloat16 rounding


def test_folding_at_a_layer_the_base_lacks_is_a_clear_error():
    base = keras.applications.MobileNet(input_shape=(32, 32, 3), include_top=False,
                                        weights=None)
    with pytest.raises(ConfigError, match="no layer 'block_99'"):
        fold_batch_norm(base, "block_99")


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
def test_model8_builds_its_upper_base_folded_in_the_machines_precision(monkeypatch):
    monkeypatch.setenv("CIFAR_CORE_FINETUNE_PRECISION", "float32")
    assert finetune_precision() == "float32"
    spec = get_spec(8)
    base = build_model(spec, 10, backbone_weights=None).get_layer(
        f"mobilenet_1.00_{spec.net.input_size}")
    assert isinstance(base.get_layer("conv_pw_7"), keras.layers.Dense)
    assert base.get_layer("conv_pw_7").compute_dtype == "float32"
    monkeypatch.setenv("CIFAR_CORE_FINETUNE_PRECISION", "mixed_bfloat16")
    base = build_model(spec, 10, backbone_weights=None).get_layer(
        f"mobilenet_1.00_{spec.net.input_size}")
    assert base.get_layer("conv_pw_7").compute_dtype == "bfloat16"
    unfolded = build_model(spec.changed(net={"fold_batch_norm": False}), 10, backbone_weights=None)
    assert isinstance(unfolded.get_layer(f"mobilenet_1.00_{spec.net.input_size}")
                      .get_layer("conv_pw_7"), keras.layers.Conv2D)
    monkeypatch.setenv("CIFAR_CORE_FINETUNE_PRECISION", "half")
    with pytest.raises(ConfigError, match="CIFAR_CORE_FINETUNE_PRECISION"):
        finetune_precision()


def test_smoothed_loss_is_cross_entropy_against_softened_targets():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 1])
    targets = 0.9 * np.eye(3)[labels] + 0.1 / 3
    expected = -(targets * np.log(probs)).sum(axis=1).mean()
    loss, _, _ = objective(0.1, 3)
    got = float(keras.ops.convert_to_numpy(loss(labels, probs)))
    assert got == pytest.approx(expected, rel=1e-5)
    plain = -np.log(probs[[0, 1], labels]).mean()
    assert got != pytest.approx(plain, rel=1e-3)
    with pytest.raises(ConfigError, match="label smoothing"):
        objective(1.0, 3)


@pytest.mark.slow  # trains
def test_label_smoothing_end_to_end_logs_the_plain_validation_loss(tiny_cifar100, monkeypatch):
    """Both paths take the same recipes: model 2 trained end to end with smoothed targets
    logs as val_loss the plain cross-entropy of its validation images."""
    from cifar_core.data import load_dataset
    from cifar_core.models import specs
    from cifar_core.training.train import train

    monkeypatch.setitem(specs.SPECS, 2, specs.MODEL_2.changed(recipe={"label_smoothing": 0.2}))
    dataset = load_dataset(tiny_cifar100)
    result = train(make_config(2, profile="quick", epochs=1), dataset)
    row = result.history[0]
    assert set(row) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert not any("cross_entropy" in key for key in row)
    x_val = dataset.x_train[result.split.val_idx]
    y_val = dataset.y_train[result.split.val_idx]
    probs = result.model.predict(x_val, verbose=0)
    plain = float(keras.losses.SparseCategoricalCrossentropy()(y_val, probs))
    smoothed, _, _ = objective(0.2, probs.shape[1])
    assert row["val_loss"] == pytest.approx(plain, rel=1e-4)
    assert row["val_loss"] != pytest.approx(float(smoothed(y_val, probs)), rel=1e-3)
