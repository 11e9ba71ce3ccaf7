"""One builder for every model: spec -> ``keras.Model``.

Every model takes raw 32x32 RGB pixels (0-255) and scales them itself, so training,
``predict`` and the dashboard feed images the same way. Its last layer is a softmax.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from cifar_core.errors import ConfigError
from cifar_core.models.backbone import fold_batch_norm, make_backbone
from cifar_core.models.precision import fast_precision
from cifar_core.models.specs import ModelSpec
from cifar_core.settings import ENV_FINETUNE_PRECISION

INPUT_SHAPE = (32, 32, 3)


def build_model(spec: ModelSpec, num_classes: int, *, backbone_weights: str | None = None,
                seed: int | None = None) -> keras.Model:
    """Build (uncompiled) the network described by ``spec`` with ``num_classes`` outputs."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if spec.aug.flips:
        # Active in training only; flips commute with the per-pixel scaling below.
        x = flip_augmentation(seed, vertical=spec.aug.vertical_flips)(x)
    if spec.net.stem == "conv":
        x = keras.layers.Rescaling(1 / 255, name="scale_0_1")(x)
        x = keras.layers.Conv2D(spec.net.conv_filters, spec.net.conv_kernel, activation="relu",
                                name="conv")(x)
        x = keras.layers.MaxPooling2D(name="pool")(x)
    else:
        # MobileNet expects inputs in [-1, 1].
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenet_preprocess")(x)
        if spec.net.input_size != INPUT_SHAPE[0]:
            x = keras.layers.Resizing(spec.net.input_size, spec.net.input_size,
                                      interpolation="bilinear", name="upsample")(x)
        base = make_backbone(spec.net.backbone, input_size=spec.net.input_size,
                             weights=backbone_weights, alpha=spec.net.backbone_alpha)
        if spec.net.fold_batch_norm and spec.net.frozen_through is not None:
            base = fold_batch_norm(base, spec.net.frozen_through, dtype=finetune_precision())
        base.trainable = not spec.net.freeze_backbone
        if spec.net.frozen_through is not None:
            freeze_through(base, spec.net.frozen_through)
        keep_batch_norm_in_inference_mode(base)
        # training=False keeps batch norm in inference mode, also while fine-tuning: Keras's
        # recommended way, and required by weights whose batch norm is folded into the bias.
        x = base(x, training=False)
    outputs = add_head(x, spec, num_classes, seed=seed)
    return keras.Model(inputs, outputs, name=f"model_{spec.number}")


def finetune_precision() -> str:
    """The precision of a folded upper base (``ModelSpec.fold_batch_norm``): mixed bfloat16
    on a CPU with bfloat16 matrix units and no GPU, else float32;
    ``CIFAR_CORE_FINETUNE_PRECISION`` overrides it. Weights and optimizer stay float32."""
    return fast_precision(ENV_FINETUNE_PRECISION)


def keep_batch_norm_in_inference_mode(base: keras.Model) -> None:
    """Freeze the base's batch-norm layers, so they always normalise with their stored
    statistics, also while the rest of the base is fine-tuned.

    ``base(x, training=False)`` alone does not do it in Keras 3: ``fit`` calls the outer model
    with ``training=True`` and the functional graph passes that value down to the nested base
    (keras-team/keras#20285). A frozen ``BatchNormalization`` runs in inference mode whatever
    ``training`` says. Its scale and offset stay fixed too (with the shared weights, whose batch
    norm is folded into the conv bias, the offset *is* that bias); every convolution is still
    fine-tuned.
    """
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def freeze_through(base: keras.Model, layer_name: str) -> None:
    """Freeze ``layer_name`` and every layer before it; the layers after it stay trainable."""
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ConfigError(f"{base.name} has no layer {layer_name!r} to freeze through")
    for layer in base.layers[:names.index(layer_name) + 1]:
        layer.trainable = False


def flip_augmentation(seed: int | None = None, *, vertical: bool = True) -> keras.Sequential:
    """Random horizontal and (``vertical``) vertical flips, drawn independently per image
    (training only).

    Two layers on purpose: Keras 3's ``RandomFlip("horizontal_and_vertical")`` draws one coin
    per image and applies both flips together, so it only ever yields the image or its
    180-degree turn. The report's augmentation (and older Keras) flips each axis on its own
    coin: the four variants identity, horizontal, vertical and both, equally likely.
    """
    second = None if seed is None else seed + 1  # one seed for both would couple the coins
    layers = [keras.layers.RandomFlip("horizontal", seed=seed, name="flip_horizontal")]
    if vertical:
        layers.append(keras.layers.RandomFlip("vertical", seed=second, name="flip_vertical"))
    return keras.Sequential(layers, name="augment_flips")


@keras.saving.register_keras_serializable(package="cifar_core")
class MirrorImage(keras.layers.Layer):
    """The image mirrored left-right, always (no randomness, no weights)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


MIRROR_LAYER, MEAN_LAYER = "mirror_image", "mean_of_both"  # the flip wrapper's own layers


def with_test_time_flips(model: keras.Model) -> keras.Model:
    """``model`` answering with the mean of its predictions for the image and its mirror
    image: the same classifier, a little more accurate, at twice the inference cost."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    mirrored = MirrorImage(name=MIRROR_LAYER)(inputs)
    outputs = keras.layers.Average(name=MEAN_LAYER)([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def add_head(x, spec: ModelSpec, num_classes: int, *, seed: int | None = None,
             dtype: str | None = None):
    """Flatten (or average pooling) -> hidden Dense layers (ReLU, optional dropout) ->
    softmax, on tensor ``x``.

    Shared by ``build_model`` and by heads trained on cached backbone features, so both
    have the same layers under the same names. ``dtype`` is the hidden layers' precision
    policy (e.g. ``"mixed_bfloat16"``); the softmax layer always computes in float32.
    """
    if spec.net.pooling == "average":
        x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(spec.net.hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}", dtype=dtype)(x)
        if spec.net.dropout:
            x = keras.layers.Dropout(spec.net.dropout, seed=seed, name=f"dropout_{i}")(x)
    if spec.net.dropout and not spec.net.hidden_units:  # no hidden layer: dropout on the features
        x = keras.layers.Dropout(spec.net.dropout, seed=seed, name="dropout_features")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)


def build_head(spec: ModelSpec, num_classes: int, feature_shape: tuple[int, ...], *,
               seed: int | None = None, dtype: str | None = None) -> keras.Model:
    """The head of ``spec`` alone, taking backbone features of ``feature_shape``."""
    inputs = keras.Input(feature_shape, name="features")
    return keras.Model(inputs, add_head(inputs, spec, num_classes, seed=seed, dtype=dtype),
                       name=f"head_{spec.number}")


def distribution_scope():
    """``MirroredStrategy`` over the visible GPUs when there are several, else a no-op."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def make_optimizer(name: str, learning_rate: float,
                   weight_ema: float = 0.0) -> keras.optimizers.Optimizer:
    """Optimizer ``name`` at ``learning_rate``; with ``weight_ema`` it also keeps a moving
    average of the weights (that momentum), which ``finalize_variable_values`` copies in."""
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
    if not 0.0 <= weight_ema < 1.0:
        raise ConfigError(f"weight EMA momentum must lie in [0, 1), got {weight_ema}")
    if weight_ema:
        return optimizers[name](learning_rate=learning_rate, use_ema=True,
                                ema_momentum=weight_ema)
    return optimizers[name](learning_rate=learning_rate)


def compile_model(model: keras.Model, *, optimizer: str, learning_rate: float) -> keras.Model:
    model.compile(optimizer=make_optimizer(optimizer, learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
