"""Classify one uploaded file: decode safely, predict, explain (the Classify page's one call)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image

from cifar_core.analysis.names import readable
from cifar_core.analysis.saliency import Saliency, saliency_map
from cifar_core.data.images import open_image, to_model_input
from cifar_core.inference import Classifier, Prediction

# Below this top-1 probability the page says plainly that the model is unsure; with 100
# classes a uniform guess gives each 1%, so 30% still leaves most of the weight elsewhere.
UNSURE_BELOW = 0.30
# A top class less than this far ahead of the second is a toss-up between the two.
UNSURE_MARGIN = 0.10
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height when applied


@dataclass(frozen=True)
class ClassifiedUpload:
    original_size: tuple[int, int]  # width, height of the file as stored (upright)
    model_input: np.ndarray  # the 32x32x3 uint8 image the model actually saw
    prediction: Prediction  # top-k classes, probabilities, superclass
    saliency: Saliency | None
    run_id: str
    seconds: float  # decode + predict (saliency excluded)


def stored_size(data: bytes) -> tuple[int, int]:
    """Width and height of an image file as it is stored, read from its header only.

    The decoder may reduce a large JPEG while decoding it (``draft``), which is faster but
    makes the decoded image smaller than the file; the size a person knows is the file's.
    EXIF rotation is applied as the decoder applies it (a portrait photo stays portrait).
    """
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1) \
            if img.format == "JPEG" else 1
    return (height, width) if orientation in _ROTATED else (width, height)


def classify_upload(classifier: Classifier, data: bytes, name: str = "upload", *,
                    top: int = 5, explain: bool = True,
                    explainer=None) -> ClassifiedUpload:
    """Decode ``data`` like training data and classify it; ``ImageError`` for bad files."""
    start = time.perf_counter()
    model_input = to_model_input(open_image(data, name=name))
    return classify_image(classifier, model_input, top=top, explain=explain,
                          explainer=explainer, original_size=stored_size(data), started=start)


def classify_image(classifier: Classifier, model_input: np.ndarray, *, top: int = 5,
                   explain: bool = True, explainer=None,
                   original_size: tuple[int, int] | None = None,
                   started: float | None = None) -> ClassifiedUpload:
    """Classify one 32x32x3 uint8 image (a decoded upload, or a test image as stored).

    ``classifier`` answers (Keras, or an export's runtime); the saliency map needs gradients,
    so it comes from ``explainer`` (a Keras model, default ``classifier.model``).
    """
    start = time.perf_counter() if started is None else started
    prediction = classifier.predict(model_input, top=top)[0]
    seconds = time.perf_counter() - start
    saliency = (saliency_map(explainer if explainer is not None else classifier.model,
                             model_input, prediction.indices[0]) if explain else None)
    return ClassifiedUpload(original_size=original_size or model_input.shape[1::-1],
                            model_input=model_input, prediction=prediction,
                            saliency=saliency, run_id=classifier.run_id, seconds=seconds)


@dataclass(frozen=True)
class ModelAnswer:
    """One model's top classes for the image every model is shown."""

    label: str  # e.g. "model 5"
    run_id: str
    prediction: Prediction
    seconds: float


def every_model(classifiers: list[tuple[str, Classifier]], model_input: np.ndarray, *,
                top: int = 3) -> list[ModelAnswer]:
    """The top ``top`` classes of each (label, classifier) for one image, in the given
    order (the progression's), each with its own prediction time."""
    answers = []
    for label, classifier in classifiers:
        start = time.perf_counter()
        prediction = classifier.predict(model_input, top=top)[0]
        answers.append(ModelAnswer(label=label, run_id=classifier.run_id,
                                   prediction=prediction,
                                   seconds=time.perf_counter() - start))
    return answers


def uncertainty(prediction: Prediction) -> str | None:
    """A plain sentence when the model is unsure of its top class, else None.

    Unsure: the top probability is below ``UNSURE_BELOW``, or the runner-up is within
    ``UNSURE_MARGIN`` of it.
    """
    if not prediction.probabilities:
        return None
    first = float(prediction.probabilities[0])
    top = readable(prediction.classes[0])
    if first < UNSURE_BELOW:
        return (f"The model is unsure: its best guess, {top}, has only {100 * first:.1f}% "
                f"probability (below {100 * UNSURE_BELOW:.0f}%). Treat it as a guess; the "
                "image may show something outside the model's classes.")
    if len(prediction.probabilities) > 1:
        second = float(prediction.probabilities[1])
        if first - second < UNSURE_MARGIN:
            return (f"The model is unsure between {top} ({100 * first:.1f}%) and "
                    f"{readable(prediction.classes[1])} ({100 * second:.1f}%).")
    return None
