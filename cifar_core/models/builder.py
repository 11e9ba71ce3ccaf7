"""One builder for every model: spec -> ``keras.Model``.

Every model takes raw 32x32 RGB pixels (0-255) and scales them itself, so training,
``predict`` and the dashboard feed images the same way. Its last layer is a softmax.
"""

from __future__ import annotations

import keras

from cifar_core.models.backbone import make_backbone
from cifar_core.models.specs import ModelSpec

INPUT_SHAPE = (32, 32, 3)


def build_model(spec: ModelSpec, num_classes: int, *, backbone_weights: str | None = None,
                seed: int | None = None) -> keras.Model:
    """Build (uncompiled) the network described by ``spec`` with ``num_classes`` outputs."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if spec.augment_flips:
        # Active in training only; flips commute with the per-pixel scaling below.
        x = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed, name="augment_flips")(x)
    if spec.stem == "conv":
        x = keras.layers.Rescaling(1 / 255, name="scale_0_1")(x)
        x = keras.layers.Conv2D(spec.conv_filters, spec.conv_kernel, activation="relu",
                                name="conv")(x)
        x = keras.layers.MaxPooling2D(name="pool")(x)
    else:
        # MobileNet expects inputs in [-1, 1].
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenet_preprocess")(x)
        if spec.input_size != INPUT_SHAPE[0]:
            x = keras.layers.Resizing(spec.input_size, spec.input_size,
                                      interpolation="bilinear", name="upsample")(x)
        base = make_backbone(spec.backbone, input_size=spec.input_size,
                             weights=backbone_weights, alpha=spec.backbone_alpha)
        base.trainable = not spec.freeze_backbone
        # training=False keeps batch norm in inference mode, also while fine-tuning: Keras's
        # recommended way, and required by weights whose batch norm is folded into the bias.
        x = base(x, training=False)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(spec.hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout, seed=seed, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"model_{spec.number}")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                  "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
    return optimizers[name](learning_rate=learning_rate)


def compile_model(model: keras.Model, *, optimizer: str, learning_rate: float) -> keras.Model:
    model.compile(optimizer=make_optimizer(optimizer, learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
