"""What drove a prediction: Grad-CAM for the small conv models, SmoothGrad for any model.

Grad-CAM weighs the feature maps of the model's conv layer by the gradient of the class
score. Models 1-5 flatten their 31x31 conv maps into dense layers, which give every location
its own weights; classic Grad-CAM averages the gradient over locations first and so loses
where the evidence was. We use the element-wise form (HiResCAM: gradient times activation
at each location, summed over channels), which is faithful for such heads. MobileNet at
32x32 ends in a 1x1 map, so backbone models use SmoothGrad instead: the gradient of the class
score with respect to the input pixels, averaged over a few noisy copies of the image.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

METHODS = ("auto", "gradcam", "smoothgrad")
GRADCAM_LAYER = "conv"  # the builder's name for the conv stem of models 1-5


@dataclass(frozen=True)
class Saliency:
    heatmap: np.ndarray  # (32, 32) float in [0, 1]: 1 = drove the prediction most
    method: str  # "gradcam" or "smoothgrad"
    class_index: int  # the output class explained


def _gradcam_layer(model):
    try:
        layer = model.get_layer(GRADCAM_LAYER)
    except ValueError:
        return None
    shape = getattr(layer, "output", None)
    shape = tuple(shape.shape) if shape is not None else ()
    return layer if len(shape) == 4 and shape[1] and shape[1] > 1 else None


def _normalize(heatmap: np.ndarray) -> np.ndarray:
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float64))
    heatmap -= heatmap.min()
    peak = heatmap.max()
    return (heatmap / peak if peak > 0 else heatmap).astype(np.float32)


def _resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> probe model


def _probe(model, layer):
    """A model giving the conv layer's activations and the output, built once per model."""
    import keras

    probe = _PROBES.get(model)
    if probe is None:
        probe = keras.Model(model.inputs[0], [layer.output, model.output])
        _PROBES[model] = probe
    return probe


def _gradcam(model, image: np.ndarray, class_index: int, layer) -> np.ndarray:
    import tensorflow as tf

    probe = _probe(model, layer)
    with tf.GradientTape() as tape:
        features, probs = probe(image[None].astype(np.float32), training=False)
        score = tf.math.log(probs[:, class_index] + 1e-9)
    grads = tape.gradient(score, features)[0].numpy()
    cam = np.maximum((features[0].numpy() * grads).sum(axis=-1), 0)  # HiResCAM
    return _resize(cam, image.shape[:2])


def _smoothgrad(model, image: np.ndarray, class_index: int, samples: int,
                noise: float, seed: int) -> np.ndarray:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    base = image.astype(np.float32)
    batch = base[None] + rng.normal(0, noise * 255.0, size=(samples, *base.shape))
    batch = tf.convert_to_tensor(np.clip(batch, 0, 255).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(batch)
        probs = model(batch, training=False)
        score = tf.reduce_sum(tf.math.log(probs[:, class_index] + 1e-9))
    grads = tape.gradient(score, batch).numpy()
    return np.abs(grads).max(axis=-1).mean(axis=0)


def saliency_map(model, image: np.ndarray, class_index: int | None = None,
                 method: str = "auto", *, samples: int = 16, noise: float = 0.1,
                 seed: int = 0) -> Saliency:
    """The saliency of ``class_index`` (default: the predicted class) for one 32x32 image.

    ``method="auto"`` picks Grad-CAM where the model has a spatial conv layer, else
    SmoothGrad. Deterministic for a given ``seed``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    image = np.asarray(image, dtype=np.uint8)
    if image.shape != (32, 32, 3):
        raise ValueError(f"expected one 32x32x3 image, got {image.shape}")
    if class_index is None:
        class_index = int(np.argmax(np.asarray(model(image[None].astype(np.float32),
                                                     training=False))[0]))
    layer = _gradcam_layer(model) if method in ("auto", "gradcam") else None
    if method == "gradcam" and layer is None:
        raise ValueError("this model has no spatial conv layer for Grad-CAM; use smoothgrad")
    if layer is not None:
        heatmap, used = _gradcam(model, image, class_index, layer), "gradcam"
    else:
        heatmap = _smoothgrad(model, image, class_index, samples, noise, seed)
        used = "smoothgrad"
    return Saliency(heatmap=_normalize(heatmap), method=used, class_index=int(class_index))
