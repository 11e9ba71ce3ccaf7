"""The penultimate layer of a built or loaded model: what the classifier layer sees.

The embedding map (``cifar_core.analysis.embedding``) draws these activations of the test
images; ``evaluate()`` saves them with a run. Every model of ``builder`` ends in a Dense layer
named ``classifier``; its input is the penultimate activation (model 1: the flattened conv
maps; models 2-7: the last hidden layer; model 8: the pooled MobileNet features).
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_core.errors import RunFolderError
from cifar_core.models.builder import MEAN_LAYER, MIRROR_LAYER

CLASSIFIER_LAYER = "classifier"
# Wider layers are stored as their leading principal components (model 1: 2,250 values an
# image, model 8: 1,024): distances between images, which the neighbours and the map use,
# survive that well; 10,000 test images then take at most 2.5 MB.
STORED_DIMENSIONS = 128


def _holder(model: keras.Model) -> keras.Model | None:
    """The (possibly nested) functional model that holds the classifier layer."""
    names = [layer.name for layer in model.layers]
    if CLASSIFIER_LAYER in names:
        return model
    for layer in model.layers:  # model 8 with test-time flips: the model is nested once
        if isinstance(layer, keras.Model):
            found = _holder(layer)
            if found is not None:
                return found
    return None


def penultimate_model(model: keras.Model) -> keras.Model:
    """A model from ``model``'s image input to its classifier layer's input.

    For a model wrapped with test-time flips it is the inner model's: the activations of the
    image as given, not of its mirror image.
    """
    holder = _holder(model)
    if holder is None:
        raise RunFolderError(f"{model.name} has no layer named {CLASSIFIER_LAYER!r}: not a "
                             "model built by cifar_core, its penultimate layer is unknown")
    return keras.Model(holder.inputs, holder.get_layer(CLASSIFIER_LAYER).input,
                       name=f"{model.name}_penultimate")


def with_penultimate(model: keras.Model) -> keras.Model | None:
    """``model`` answering ``[probabilities, penultimate activations]`` in one pass, or None
    when its classifier layer cannot be reached that way (then ``penultimate_model`` gives
    the activations in a pass of their own).

    A model wrapped with test-time flips (``with_test_time_flips``) is rebuilt around its
    inner model's two outputs: the mean of the image's and the mirror's probabilities, and
    the activations of the image as given. Same layers, same weights, same arithmetic as the
    wrapper; the activations come with it instead of costing a third pass of the network
    through the test set (model 8 on 1,000 images: 51.8 s -> 41.4 s on 2 cores,
    ``benchmarks/evaluate_pass.py``).
    """
    names = [layer.name for layer in model.layers]
    if CLASSIFIER_LAYER in names:
        return keras.Model(model.inputs, [model.outputs[0],
                                          model.get_layer(CLASSIFIER_LAYER).input],
                           name=f"{model.name}_with_penultimate")
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not {MIRROR_LAYER, MEAN_LAYER} <= set(names) or len(inner) != 1:
        return None
    both = with_penultimate(inner[0])
    if both is None:
        return None
    image = keras.Input(model.input_shape[1:], name="image")
    probabilities, activations = both(image)
    mirrored_probabilities, _ = both(model.get_layer(MIRROR_LAYER)(image))
    mean = model.get_layer(MEAN_LAYER)([probabilities, mirrored_probabilities])
    return keras.Model(image, [mean, activations], name=f"{model.name}_with_penultimate")


def compact(vectors: np.ndarray, dimensions: int = STORED_DIMENSIONS) -> tuple[np.ndarray, str]:
    """``(vectors as float16, how)``: as they are when at most ``dimensions`` wide, else their
    first ``dimensions`` principal components (centred, by a deterministic SVD)."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    width = vectors.shape[1]
    if width <= dimensions:
        return vectors.astype(np.float16), f"the {width} activations"
    keep = min(dimensions, len(vectors))
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    # One sign per component, so the same activations always give the same stored vectors.
    largest = np.argmax(np.abs(components[:keep]), axis=1)
    signs = np.sign(components[np.arange(keep), largest])
    signs[signs == 0] = 1
    projected = centred @ (components[:keep].T * signs)
    return projected.astype(np.float16), f"the first {keep} principal components of {width}"
