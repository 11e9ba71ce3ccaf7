"""``evaluate()``: test-set metrics for every model, fine and superclass."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cifar_core.data.dataset import Dataset
from cifar_core.errors import CifarCoreError
from cifar_core.models.float32 import inference_copy
from cifar_core.models.penultimate import compact, penultimate_model, with_penultimate
from cifar_core.training.train import labels_for, output_class_names

TOP_K = 5  # predictions.npz keeps the top 5 classes and probabilities per test image


@dataclass
class Evaluation:
    metrics: dict  # the content of metrics.json
    predictions: dict[str, np.ndarray]  # the arrays of predictions.npz
    embedding: dict[str, np.ndarray] | None = None  # the arrays of embedding.npz


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


class _BatchProgress(keras.callbacks.Callback):
    """Reports ``(batches done, batches in all)`` after each prediction batch."""

    def __init__(self, steps: int, on_batch: Callable[[int, int], None]):
        super().__init__()
        self.steps, self._on_batch = steps, on_batch

    def on_predict_batch_end(self, batch, logs=None):
        self._on_batch(batch + 1, self.steps)


def _predict(model, images: np.ndarray, batch_size: int,
             on_batch: Callable[[int, int], None] | None):
    extra = {"callbacks": [_BatchProgress(math.ceil(len(images) / batch_size), on_batch)]} \
        if on_batch else {}  # without one, the plain call (any object with predict() works)
    return model.predict(images, batch_size=batch_size, verbose=0, **extra)


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 500,
                          on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The model's probabilities for ``images``; ``on_batch(done, total)`` after each batch
    (a large model's test pass takes minutes: the dashboard shows its progress)."""
    return np.asarray(_predict(model, images, batch_size, on_batch), dtype=np.float32)


def embedding_arrays(activations: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of ``embedding.npz`` for the test images' penultimate ``activations``."""
    vectors, stored_as = compact(activations)
    return {"vectors": vectors, "layer_width": np.int32(np.prod(activations.shape[1:])),
            "stored_as": np.array(stored_as)}


def predict_with_embedding(model, images: np.ndarray, batch_size: int = 500,
                           on_batch: Callable[[int, int], None] | None = None
                           ) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """``(probabilities, embedding arrays)`` for ``images``, in one pass for every model
    ``build_model`` makes, test-time flips included (``with_penultimate``); a second pass for
    the activations only where that cannot be built. The embedding is None for a model
    without a ``classifier`` layer."""
    combined = with_penultimate(model) if isinstance(model, keras.Model) else None
    if combined is not None:
        probs, activations = _predict(combined, images, batch_size, on_batch)
        return np.asarray(probs, dtype=np.float32), embedding_arrays(np.asarray(activations))
    return predict_in_two_passes(model, images, batch_size, on_batch)


def predict_in_two_passes(model, images: np.ndarray, batch_size: int = 500,
                          on_batch: Callable[[int, int], None] | None = None
                          ) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """``predict_with_embedding``'s answer in two passes: the probabilities, then the
    activations through ``penultimate_model`` (what evaluate() did for flip-averaged models
    before ``with_penultimate`` took them; ``benchmarks/evaluate_pass.py`` times both)."""
    probs = predict_probabilities(model, images, batch_size, on_batch)
    if not isinstance(model, keras.Model):
        return probs, None
    try:
        inner = penultimate_model(model)
    except CifarCoreError:
        return probs, None
    activations = np.asarray(_predict(inner, images, batch_size, None))
    return probs, embedding_arrays(activations)


def evaluate(model: keras.Model, dataset: Dataset, label_set: str = "fine", *,
             on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    """Top-1/top-5, superclass accuracy, per-class metrics, confusion matrices, predictions.

    Superclass accuracy: for fine-label models, each fine prediction is mapped to its
    superclass; for coarse-label models, it is their own top-1. ``on_batch(done, total)``
    reports the test set's prediction batches. The same pass gives the test images'
    penultimate activations (``Evaluation.embedding``, saved as ``embedding.npz``).
    """
    start = time.perf_counter()
    # The run's numbers are those of the model as it answers everywhere else (predict, the
    # Classify page, the exports): float32 throughout (cifar_core.models.float32).
    model = inference_copy(model)
    probs, embedding = predict_with_embedding(model, dataset.x_test, on_batch=on_batch)
    y_true = labels_for(dataset, label_set, "test")
    names = output_class_names(dataset, label_set)
    num_outputs = len(names)
    if probs.shape[1] != num_outputs:
        raise ValueError(f"model has {probs.shape[1]} outputs, the {label_set} labels of "
                         f"{dataset.name} have {num_outputs} classes")
    y_pred = probs.argmax(axis=1)
    order = np.argsort(-probs, axis=1)[:, :TOP_K]

    # Superclass view (None when the data set has none).
    output_to_super = None
    confusion_super = None
    super_top1 = None
    if dataset.has_superclasses:
        output_to_super = (dataset.fine_to_coarse if label_set == "fine"
                           else np.arange(len(dataset.superclass_names)))
        true_super = output_to_super[y_true]
        pred_super = output_to_super[y_pred]
        super_top1 = float(np.mean(true_super == pred_super))
        confusion_super = confusion_matrix(true_super, pred_super,
                                           labels=np.arange(len(dataset.superclass_names)))

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(num_outputs), zero_division=0)
    per_class = []
    for i, name in enumerate(names):
        per_class.append({
            "index": i, "class": name,
            "superclass": (dataset.superclass_names[output_to_super[i]]
                           if output_to_super is not None else None),
            "precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6), "support": int(support[i]),
        })
    metrics = {
        "label_set": label_set,
        "num_test": len(y_true),
        "class_names": names,
        "superclass_names": list(dataset.superclass_names) if dataset.has_superclasses else None,
        "output_to_superclass": output_to_super.tolist() if output_to_super is not None else None,
        "test_top1": float(np.mean(y_pred == y_true)),
        "test_top5": top_k_accuracy(probs, y_true, TOP_K),
        "test_superclass_top1": super_top1,
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=np.arange(num_outputs)).tolist(),
        "confusion_superclass": confusion_super.tolist() if confusion_super is not None else None,
        "evaluation_seconds": round(time.perf_counter() - start, 3),
    }
    predictions = {
        "test_index": np.arange(len(y_true), dtype=np.int32),
        "y_true": y_true.astype(np.int16),
        "y_pred": y_pred.astype(np.int16),
        "top_classes": order.astype(np.int16),
        "top_probs": np.take_along_axis(probs, order, axis=1).astype(np.float32),
        "probs": probs.astype(np.float16),
    }
    return Evaluation(metrics=metrics, predictions=predictions, embedding=embedding)
