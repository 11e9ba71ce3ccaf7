"""ImageNet backbones (MobileNet v1/v2) with configurable weights.

``weights`` is ``"imagenet"`` (the Keras download), a local ``.weights.h5`` file
(``--backbone-weights`` / ``CIFAR_CORE_BACKBONE_WEIGHTS``), or None for random init (tests).
"""

from __future__ import annotations

import hashlib
from itertools import pairwise
from pathlib import Path

import keras
import numpy as np

from cifar_core import settings
from cifar_core.errors import BackboneWeightsError, ConfigError

BACKBONES = {
    "mobilenet_v1": keras.applications.MobileNet,
    "mobilenet_v2": keras.applications.MobileNetV2,
}


def resolve_weights(weights: str | None) -> str | None:
    """None/"none" -> random init; "imagenet" stays; anything else must be an existing file."""
    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"backbone weights file not found: {path}. Pass --backbone-weights PATH or set "
            f"{settings.ENV_BACKBONE_WEIGHTS} to a Keras .weights.h5 file of MobileNet "
            "without its classifier (include_top=False)."
        )
    return str(path.resolve())


def weights_identity(weights: str | None) -> dict:
    """What config.json and cache keys record about the weights: name and content hash."""
    resolved = resolve_weights(weights)
    if resolved in (None, "imagenet"):
        return {"weights": resolved, "sha256": None}
    digest = hashlib.sha256(Path(resolved).read_bytes()).hexdigest()
    return {"weights": resolved, "sha256": digest}


def make_backbone(name: str, *, input_size: int, weights: str | None,
                  alpha: float = 1.0) -> keras.Model:
    """The backbone without its classifier, for ``input_size`` x ``input_size`` RGB inputs."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if input_size < 32:
        raise ConfigError(f"backbone input size must be at least 32, got {input_size}")
    resolved = resolve_weights(weights)
    try:
        return BACKBONES[name](input_shape=(input_size, input_size, 3), alpha=alpha,
                               include_top=False, weights=resolved)
    except Exception as exc:
        if resolved == "imagenet":
            raise BackboneWeightsError(
                f"could not download the ImageNet weights for {name} ({type(exc).__name__}: "
                f"{exc}). Without network access, point at a local weights file with "
                f"--backbone-weights PATH or {settings.ENV_BACKBONE_WEIGHTS}=PATH."
            ) from None
        raise BackboneWeightsError(f"could not load backbone weights {resolved} into {name}: "
                                   f"{type(exc).__name__}: {exc}") from None


CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)  # what a batch norm folds into


def fold_batch_norm(base: keras.Model, cut: str, *, dtype: str = "float32") -> keras.Model:
    """``base`` rebuilt for fast fine-tuning above ``cut``, computing the same function: each
    batch norm folded into the convolution before it (its scale into the kernel, its offset
    into a bias), each pointwise (1x1) convolution as a ``Dense`` layer on the channel axis;
    the layers above ``cut`` in precision policy ``dtype``, those up to it in float32.

    Why: fine-tuned in inference mode, a batch norm is a fixed per-channel affine map, but
    TensorFlow still runs it (and its gradient) as separate element-wise passes, and a 1x1
    convolution's gradient does not reach the CPU's bfloat16 matrix units while a matrix
    product does. On the 2-core Xeon of BENCHMARKS.md, a training step of MobileNet v1's
    blocks 7-13 (batch 128, 128 px) runs at 514 images/s this way in ``mixed_bfloat16``,
    against 281 unfolded in float32 (folded float32: 315; unfolded bfloat16: 292). The
    frozen layers up to ``cut`` only run forward (the feature pass of a cached cut); folded
    in float32 they give the same maps to float rounding, about 1.5 times as fast.
    The folded convolutions' biases (the batch norms' offsets) train with the kernels.
    """
    names = [layer.name for layer in base.layers]
    if cut not in names:
        raise ConfigError(f"{base.name} has no layer {cut!r} to cut at")
    above = {layer.name for layer in base.layers[names.index(cut) + 1:]}
    folded_into = {}  # batch-norm name -> the convolution it follows
    for conv, norm in pairwise(base.layers):
        if (isinstance(norm, keras.layers.BatchNormalization)
                and isinstance(conv, CONVOLUTIONS) and norm.input is conv.output):
            folded_into[norm.name] = conv
    convs = {conv.name for conv in folded_into.values()}

    def rebuild(layer):
        precision = dtype if layer.name in above else "float32"
        if isinstance(layer, keras.layers.InputLayer) or layer.name in folded_into:
            # copied as it is (a folded batch norm's copy is never called: skip_folded)
            return layer.__class__.from_config(layer.get_config())
        if _is_pointwise(layer):
            return keras.layers.Dense(layer.filters, use_bias=layer.use_bias or layer.name in convs,
                                      name=layer.name, dtype=precision)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            precision = _depthwise_dtype(precision)
        config = layer.get_config() | {"dtype": precision}
        if layer.name in convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def skip_folded(layer, *args, **kwargs):  # a folded batch norm passes its input on
        return args[0] if layer.name in folded_into else layer(*args, **kwargs)

    model = keras.models.clone_model(base, clone_function=rebuild, call_function=skip_folded)
    model.name = base.name  # how the builder finds its base
    for norm_name, conv in folded_into.items():
        _load_folded(model.get_layer(conv.name), conv, base.get_layer(norm_name))
    for layer in base.layers:
        if layer.name not in convs and layer.name not in folded_into and layer.weights:
            weights = layer.get_weights()
            if _is_pointwise(layer):
                weights[0] = weights[0][0, 0]
            model.get_layer(layer.name).set_weights(weights)
    return model


def _depthwise_dtype(dtype: str) -> str:
    """The policy of a rebuilt depthwise convolution: float32 under a mixed policy.

    TensorFlow's CPU kernels compute depthwise convolutions' gradients in bfloat16 far more
    slowly than in float32 (a 3x3 stride-2 one on 128 maps of 9x9x512: 194 ms against 22 ms
    forward and backward, BENCHMARKS.md), and they are a small part of the arithmetic: only
    the matrix products gain from bfloat16.
    """
    return "float32" if dtype.startswith("mixed_") else dtype


def _is_pointwise(layer) -> bool:
    """A plain 1x1 convolution, stride 1: a matrix product over the channel axis."""
    return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) == (1, 1) and layer.groups == 1
            and layer.get_config()["activation"] == "linear")


def _load_folded(target, conv, norm) -> None:
    """Set ``target``'s kernel and bias to ``conv`` followed by ``norm`` (inference mode)."""
    kernel = conv.get_weights()[0]
    values = dict(zip([w.path.rsplit("/", 1)[-1] for w in norm.weights], norm.get_weights(),
                      strict=True))
    variance = values["moving_variance"]
    scale = values.get("gamma", np.ones_like(variance)) / np.sqrt(variance + norm.epsilon)
    offset = values.get("beta", np.zeros_like(variance)) - values["moving_mean"] * scale
    bias = conv.get_weights()[1] if conv.use_bias else np.zeros_like(scale)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # output channel = input x multiplier
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    if _is_pointwise(conv):
        kernel = kernel[0, 0]
    target.set_weights([kernel, bias * scale + offset])
