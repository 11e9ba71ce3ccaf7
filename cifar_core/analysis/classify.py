"""Classify one uploaded file: decode safely, predict, explain (the Classify page's one call)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cifar_core.analysis.saliency import Saliency, saliency_map
from cifar_core.data.images import open_image, to_model_input
from cifar_core.inference import Classifier, Prediction


@dataclass(frozen=True)
class ClassifiedUpload:
    original_size: tuple[int, int]  # width, height of the decoded file
    model_input: np.ndarray  # the 32x32x3 uint8 image the model actually saw
    prediction: Prediction  # top-k classes, probabilities, superclass
    saliency: Saliency | None
    run_id: str
    seconds: float  # decode + predict (saliency excluded)


def classify_upload(classifier: Classifier, data: bytes, name: str = "upload", *,
                    top: int = 5, explain: bool = True) -> ClassifiedUpload:
    """Decode ``data`` like training data and classify it; ``ImageError`` for bad files."""
    start = time.perf_counter()
    image = open_image(data, name=name)
    model_input = to_model_input(image)
    prediction = classifier.predict(model_input, top=top)[0]
    seconds = time.perf_counter() - start
    saliency = (saliency_map(classifier.model, model_input, prediction.indices[0])
                if explain else None)
    return ClassifiedUpload(original_size=image.size, model_input=model_input,
                            prediction=prediction, saliency=saliency,
                            run_id=classifier.run_id, seconds=seconds)
