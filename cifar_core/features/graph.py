"""Where a built model is cut for the feature cache: which specs can use it, the frozen
part whose output is stored, and the part above it that trains on what is stored.

A frozen base in inference mode (``training=False``) is a fixed function of its input; so is
the frozen lower part of a base fine-tuned only above a layer (``ModelSpec.frozen_through``,
model 8). The sub-models here share their weights with the model ``build_model`` made, so
whatever trains on the stored outputs trains the end-to-end model's own layers.
"""

from __future__ import annotations

import keras

from cifar_core.models.specs import ModelSpec


def uses_frozen_features(spec: ModelSpec) -> bool:
    """A frozen backbone, or a frozen lower part of one: its features can be precomputed.

    Every augmentation a spec can name (``Augmentation``) works on cached features: a flip
    picks one of the cached variants, shifts and cutout act on the cached maps. An image-level
    augmentation added there would make the inputs unbounded and must rule the cache out here.
    """
    net = spec.net
    return net.stem == "mobilenet" and bool(net.freeze_backbone or net.frozen_through)


# --- the parts of a built model ------------------------------------------------------------

def cut_layer(spec: ModelSpec) -> str | None:
    """The base layer whose output is cached: None for the whole base (frozen base)."""
    return None if spec.net.freeze_backbone else spec.net.frozen_through


def trunk_input(model: keras.Model):
    """The tensor after augmentation: what the base's preprocessing receives."""
    return model.get_layer("mobilenet_preprocess").input


def base_layer(model: keras.Model) -> keras.Model:
    """The backbone, a model nested in one built by ``build_model``."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model)
                and layer.name.startswith("mobilenet"))


def _base_output(model: keras.Model):
    """The base's output as a tensor of the outer model (the head's input)."""
    first = "average_pool" if any(layer.name == "average_pool" for layer in model.layers) \
        else "flatten"
    return model.get_layer(first).input


def _base_input(model: keras.Model):
    """What the base receives in the outer model: the preprocessed (resized) images."""
    before = "upsample" if any(layer.name == "upsample" for layer in model.layers) \
        else "mobilenet_preprocess"
    return model.get_layer(before).output


def feature_extractor(model: keras.Model, cut: str | None = None) -> keras.Model:
    """Preprocessing (+ resizing) and the base, or the base up to ``cut``, from a model built
    by ``build_model`` (sharing its weights)."""
    if cut is None:
        return keras.Model(trunk_input(model), _base_output(model), name="feature_extractor")
    base = base_layer(model)
    lower = keras.Model(base.input, base.get_layer(cut).output, name="lower_base")
    return keras.Model(trunk_input(model), lower(_base_input(model)), name="feature_extractor")


def head_model(model: keras.Model, cut: str | None = None) -> keras.Model:
    """The layers after the base (pooling, hidden, dropout, classifier), or after ``cut``
    (the upper base and those layers), sharing weights."""
    head = keras.Model(_base_output(model), model.output, name="head")
    if cut is None:
        return head
    base = base_layer(model)
    upper = keras.Model(base.get_layer(cut).output, base.output, name="upper_base")
    inputs = keras.Input(upper.input.shape[1:], name="features")
    return keras.Model(inputs, head(upper(inputs)), name="upper_and_head")


def trunk_model(model: keras.Model) -> keras.Model:
    """The whole network without its augmentation layer, sharing weights."""
    return keras.Model(trunk_input(model), model.output, name="trunk")
