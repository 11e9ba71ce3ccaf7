"""The parity gate: an export must answer like the Keras model it came from.

The reference is the run's own ``predictions.npz``: the Keras model's answers on the whole
test set, written by ``evaluate()`` (probabilities kept as float16, so probability
differences below about 0.001 are not resolved).
"""

from __future__ import annotations

import numpy as np

# (least share of test images whose top-1 class agrees, most top-1 points lost)
THRESHOLDS = {"none": (0.999, 0.1), "float16": (0.999, 0.1), "int8": (None, 1.0)}


def parity(probabilities: np.ndarray, recorded: dict[str, np.ndarray],
           quantization: str = "none") -> dict:
    """The export's figures against the recorded Keras predictions, and whether it passes."""
    y_true = np.asarray(recorded["y_true"], dtype=int)
    keras_pred = np.asarray(recorded["y_pred"], dtype=int)
    if probabilities.shape[0] != len(y_true):
        raise ValueError(f"{probabilities.shape[0]} answers for {len(y_true)} test images")
    export_pred = probabilities.argmax(axis=1)
    keras_top1 = float(np.mean(keras_pred == y_true))
    export_top1 = float(np.mean(export_pred == y_true))
    agreement = float(np.mean(export_pred == keras_pred))
    difference = None
    if "probs" in recorded:
        difference = float(np.max(np.abs(probabilities - np.asarray(recorded["probs"],
                                                                   dtype=np.float32))))
    least_agreement, most_lost = THRESHOLDS[quantization]
    lost = 100 * (keras_top1 - export_top1)
    reasons = []
    if least_agreement is not None and agreement < least_agreement:
        reasons.append(f"top-1 agrees on {100 * agreement:.2f}% of test images (at least "
                       f"{100 * least_agreement:.1f}% required)")
    if lost > most_lost:
        reasons.append(f"top-1 {lost:.2f} points below Keras (at most {most_lost} allowed)")
    return {"test_images": len(y_true), "keras_top1": round(keras_top1, 6),
            "export_top1": round(export_top1, 6), "top1_agreement": round(agreement, 6),
            "max_probability_difference": None if difference is None else round(difference, 6),
            "thresholds": {"least_top1_agreement": least_agreement,
                           "most_top1_points_lost": most_lost},
            "passed": not reasons, "failures": reasons}


def in_words(figures: dict) -> str:
    """One line for the CLI and the dashboard."""
    line = (f"top-1 {100 * figures['export_top1']:.2f}% (Keras {100 * figures['keras_top1']:.2f}"
            f"%), same top-1 on {100 * figures['top1_agreement']:.2f}% of "
            f"{figures['test_images']:,} test images")
    if figures.get("max_probability_difference") is not None:
        line += f", probabilities within {figures['max_probability_difference']:.4f}"
    verdict = "passed" if figures["passed"] else "FAILED: " + "; ".join(figures["failures"])
    return f"{line}: {verdict}"
