"""A trained model as it answers: every layer in float32, the training-only augmentation gone.

Model 8 fine-tunes its upper base in ``mixed_bfloat16`` where the CPU has bfloat16 matrix
units (``cifar_core.models.precision``): a training-speed choice; its weights are float32.
Everything that *answers* with a model -- ``evaluate()`` (the run's metrics and
``predictions.npz``), ``cifar-core predict`` and the Classify page, and the exports -- uses this
copy, so that all of them compute the same function of the trained weights. Measured on model
8 (BENCHMARKS.md, *Exports*): answering in bfloat16 instead changed the top-1 of 11 of 10,000
test images against the float32 exports, which is all the export gate's 0.1% allows.
"""

from __future__ import annotations

import keras
import numpy as np

# Training-only augmentation: an answering model must not hold it. Keras 3's random layers
# default to ``training=True`` when called without it (the SavedModel endpoint does that: its
# answers came out flipped, caught by the export parity check), and tf2onnx cannot convert
# their random ops at all.
AUGMENTATION_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast",
    "RandomCrop", "RandomBrightness") if hasattr(keras.layers, name))


def _policy(layer) -> str:
    return getattr(getattr(layer, "dtype_policy", None), "name", "float32")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _on_channels(layer) -> bool:
    """A ``Dense`` layer applied to the channel axis of a 4-D map: a 1x1 convolution that
    ``cifar_core.models.backbone.fold_batch_norm`` rebuilt as a matrix product for training
    speed."""
    if type(layer) is not keras.layers.Dense:
        return False
    try:
        return len(layer.input.shape) == 4
    except (AttributeError, ValueError):  # not called in a graph: nothing to tell
        return False


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    for layer in source.layers:
        if isinstance(layer, AUGMENTATION_LAYERS) or not layer.weights:
            continue  # (an input layer's clone may be named otherwise: it has no weights)
        twin = target.get_layer(layer.name)
        if isinstance(layer, keras.Model):
            _copy_weights(layer, twin)
        else:  # a Dense kernel (in, out) becomes the 1x1 convolution's (1, 1, in, out)
            twin.set_weights([np.reshape(value, tuple(slot.shape)) for value, slot
                              in zip(layer.get_weights(), twin.weights, strict=True)])


def inference_copy(model: keras.Model) -> keras.Model:
    """``model`` with the same weights and function, every layer in float32 (converters do not
    take bfloat16 either), the augmentation layers replaced by identities, and model 8's
    channel-axis ``Dense`` layers back as 1x1 convolutions. The model itself when there is
    nothing to change (models 1-4; models 5-7 carry flip layers, model 8 all three).

    Why the convolutions: TensorFlow Lite turns a ``Dense`` on a 4-D map into a matrix product
    and a separate bias ``ADD``, so int8 quantizes the product before the bias at a range
    about 9 times as wide as the layer's output (QuantizationDebugger on model 8: the error of
    ``conv_pw_1`` was 1.2 quantization steps); as a convolution the bias and ReLU6 fuse into
    it with 32-bit accumulation (BENCHMARKS.md, *Exports*)."""
    if not isinstance(model, keras.Model):
        return model  # no layers to change (e.g. a model served through its predict only)
    layers = list(_all_layers(model))
    if all(_policy(layer) == "float32" and not isinstance(layer, AUGMENTATION_LAYERS)
           and not _on_channels(layer) for layer in layers):
        return model

    def for_inference(layer):
        if isinstance(layer, AUGMENTATION_LAYERS):
            return keras.layers.Identity(name=layer.name)
        if _on_channels(layer):
            return keras.layers.Conv2D(layer.units, 1, use_bias=layer.use_bias,
                                       activation=layer.get_config()["activation"],
                                       name=layer.name, dtype="float32")
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=for_inference, recursive=True)
    _copy_weights(model, copy)
    return copy
