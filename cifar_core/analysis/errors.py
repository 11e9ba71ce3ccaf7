"""Error analysis of finished runs, from their saved test predictions and metrics: how well
a run's confidence matches its accuracy (calibration), which of its errors stay inside the
true superclass (near misses), and which test images it gets most wrong (top losses).

Plain NumPy and pandas on ``predictions.npz`` and ``metrics.json``: nothing here loads a model
or Streamlit. Runs that lack what a view needs get a ``NotApplicable`` with the sentence to
show instead of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cifar_core.analysis.classes import (
    class_names,
    confusion_matrix,
    has_superclasses,
    output_to_superclass,
    superclass_names,
)
from cifar_core.analysis.images import Example
from cifar_core.analysis.names import readable

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class NotApplicable:
    """A view that does not apply to a run, and why, in a sentence for the page."""

    reason: str


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Confidence (the top-1 probability) against accuracy, in equal-width bins.

    ``edges`` has ``bins + 1`` values from 0 to 1; per bin: ``counts`` test images, their mean
    ``confidence`` and their ``accuracy`` (NaN where a bin is empty). The expected calibration
    error ``ece`` is the count-weighted mean of |accuracy - confidence| over the bins: how many
    points the stated confidence is off, on average over the test images.
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float
    mean_confidence: float
    overall_accuracy: float

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def calibration(confidence: np.ndarray, correct: np.ndarray,
                bins: int = CALIBRATION_BINS) -> Calibration:
    """``Calibration`` of predictions with these top-1 probabilities and outcomes.

    The bins are scikit-learn's ``calibration_curve`` ones (``strategy="uniform"``: a
    probability on an inner edge goes to the bin below it), so the curve agrees with it; the
    counts and the ECE come from the same binning.
    """
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError("confidence and correct must be 1-D arrays of one length")
    if not len(confidence):
        raise ValueError("no predictions to calibrate")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(accuracy[filled] - mean_conf[filled]))
                / counts.sum())
    return Calibration(edges=edges, counts=counts, confidence=mean_conf, accuracy=accuracy,
                       ece=ece, mean_confidence=float(confidence.mean()),
                       overall_accuracy=float(correct.mean()))


def run_calibration(predictions: dict[str, np.ndarray],
                    bins: int = CALIBRATION_BINS) -> Calibration:
    """The calibration of a run's top-1 predictions on its test images."""
    return calibration(predictions["top_probs"][:, 0],
                       predictions["y_pred"] == predictions["y_true"], bins)


def calibration_by_superclass(predictions: dict[str, np.ndarray], metrics: dict,
                              bins: int = CALIBRATION_BINS) -> pd.DataFrame | NotApplicable:
    """Per superclass of the true class: test images, accuracy, mean confidence and ECE,
    the worst calibrated first."""
    if metrics.get("label_set") == "coarse":
        calibrated = run_calibration(predictions, bins)
        return NotApplicable("This run was trained on the superclasses themselves: its "
                             f"calibration is the one above (ECE {100 * calibrated.ece:.1f} "
                             "points).")
    if not has_superclasses(metrics):
        return NotApplicable("This run's data set has no superclasses.")
    mapping = output_to_superclass(metrics)
    names = superclass_names(metrics)
    true_super = mapping[predictions["y_true"]]
    confidence = predictions["top_probs"][:, 0]
    correct = predictions["y_pred"] == predictions["y_true"]
    rows = []
    for index, name in enumerate(names):
        mask = true_super == index
        if not mask.any():
            continue
        part = calibration(confidence[mask], correct[mask], bins)
        rows.append({"superclass": readable(name), "test images": int(mask.sum()),
                     "accuracy": part.overall_accuracy, "confidence": part.mean_confidence,
                     "ece": part.ece})
    return pd.DataFrame(rows).sort_values("ece", ascending=False, ignore_index=True)


def calibration_in_words(result: Calibration, run_label: str = "the model") -> str:
    """What a reader should take from a reliability diagram, in two sentences: the most
    populated confident bin read aloud, and the average gap."""
    confident = [i for i in range(len(result.counts))
                 if result.counts[i] and result.edges[i] >= 0.5]
    # the fullest bin; among equals the most confident ("when it says 90%" reads best)
    pick = max(confident or [int(np.argmax(result.counts))], key=lambda i: (result.counts[i], i))
    low, high = 100 * result.edges[pick], 100 * result.edges[pick + 1]
    said = (f"When {run_label} is {low:.0f}-{high:.0f}% sure, it is right "
            f"{100 * result.accuracy[pick]:.0f}% of the time ({result.counts[pick]:,} of "
            f"{result.total:,} test images).")
    gap = result.mean_confidence - result.overall_accuracy
    if abs(gap) < 0.01:
        tendency = "its confidence matches its accuracy overall"
    elif gap > 0:
        tendency = f"overconfident by {100 * gap:.1f} points overall"
    else:
        tendency = f"underconfident by {100 * -gap:.1f} points overall"
    return (f"{said} Its stated confidence is off by {100 * result.ece:.1f} points on "
            f"average (expected calibration error); {tendency}.")


# ----------------------------------------------------------------------------- near misses


@dataclass(frozen=True)
class NearMisses:
    """A run's test errors split by whether the predicted class shares the true class's
    superclass (a near miss: "maple" for "oak") or not ("maple" for "bus")."""

    errors: int
    inside: int  # wrong class, right superclass
    outside: int  # wrong superclass too
    total: int  # test images

    @property
    def inside_share(self) -> float:
        return self.inside / self.errors if self.errors else 0.0


def near_misses(metrics: dict) -> NearMisses | NotApplicable:
    """The near misses of a run, from its fine-class confusion matrix."""
    if metrics.get("label_set") == "coarse":
        return NotApplicable("This run was trained on the 20 superclasses: every error is "
                             "outside the true superclass, so near misses do not apply.")
    if not has_superclasses(metrics):
        return NotApplicable("This run's data set has no superclasses, so near misses do "
                             "not apply.")
    matrix = confusion_matrix(metrics)
    mapping = output_to_superclass(metrics)
    same = mapping[:, None] == mapping[None, :]
    wrong = ~np.eye(len(matrix), dtype=bool)
    inside, outside = int(matrix[same & wrong].sum()), int(matrix[~same].sum())
    return NearMisses(errors=inside + outside, inside=inside, outside=outside,
                      total=int(matrix.sum()))


def near_miss_examples(predictions: dict[str, np.ndarray], metrics: dict, *, inside: bool,
                       limit: int = 12) -> list[int]:
    """Positions (in ``predictions``) of up to ``limit`` errors of one kind, the most
    confident first."""
    mapping = output_to_superclass(metrics)
    y_true, y_pred = predictions["y_true"], predictions["y_pred"]
    wrong = y_true != y_pred
    same = mapping[y_true] == mapping[y_pred]
    picked = np.flatnonzero(wrong & (same if inside else ~same))
    order = np.argsort(-predictions["top_probs"][picked, 0], kind="stable")
    return picked[order][:limit].tolist()


def examples_at(predictions: dict[str, np.ndarray], positions) -> list[Example]:
    """The test images at ``positions`` of ``predictions``, as gallery examples."""
    return [Example(test_index=int(predictions["test_index"][i]),
                    true_class=int(predictions["y_true"][i]),
                    predicted_class=int(predictions["y_pred"][i]),
                    confidence=float(predictions["top_probs"][i, 0])) for i in positions]


# ----------------------------------------------------------------------------- top losses


def top_losses(predictions: dict[str, np.ndarray], metrics: dict, *,
               superclass: str | None = None, offset: int = 0,
               count: int = 12) -> pd.DataFrame | NotApplicable:
    """The test images with the largest cross-entropy of their true class, largest first:
    position in ``predictions``, test index, true and predicted class in words, the
    probability of each and the loss. ``superclass`` keeps the images of that true
    superclass; ``offset``/``count`` page through.

    The loss needs the probability of the true class for every image: runs that saved only
    their top 5 (older runs, before ``probs`` was kept) get a ``NotApplicable``.
    """
    if "probs" not in predictions:
        return NotApplicable("This run saved only its top-5 probabilities (it predates the "
                             "full ones), so the loss of every test image is not known; "
                             "train it again to see its top losses.")
    probs = np.asarray(predictions["probs"], dtype=np.float64)
    y_true, y_pred = predictions["y_true"].astype(np.int64), predictions["y_pred"]
    positions = np.arange(len(y_true))
    if superclass is not None:
        if metrics.get("label_set") == "coarse" or not has_superclasses(metrics):
            return NotApplicable("This run has no superclasses to filter by.")
        names = [readable(n) for n in superclass_names(metrics)]
        if readable(superclass) not in names:
            return NotApplicable(f"No superclass named {superclass!r} in this run.")
        wanted = names.index(readable(superclass))
        positions = positions[output_to_superclass(metrics)[y_true] == wanted]
    p_true = probs[positions, y_true[positions]]
    loss = -np.log(np.maximum(p_true, 1e-7))  # float16 probabilities: 0 for the hopeless
    order = np.argsort(-loss, kind="stable")[offset:offset + count]
    classes = class_names(metrics)
    rows = []
    for i in order:
        at = int(positions[i])
        rows.append({"position": at, "test image": int(predictions["test_index"][at]),
                     "true class": readable(classes[y_true[at]]),
                     "predicted": readable(classes[int(y_pred[at])]),
                     "p(true)": float(p_true[i]), "p(predicted)": float(probs[at, y_pred[at]]),
                     "loss": float(loss[i])})
    return pd.DataFrame(rows, columns=["position", "test image", "true class", "predicted",
                                       "p(true)", "p(predicted)", "loss"])
