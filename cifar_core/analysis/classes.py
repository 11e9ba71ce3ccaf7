"""Per-class views of one run's ``metrics.json``: strengths, weaknesses, confusions.

Every function reads the metrics dict written by ``cifar_core.training.evaluate`` and
refuses, with a ``RunFolderError`` naming what is missing, metrics that lack what it needs
(a run folder edited by hand or written by other code must not crash a page).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cifar_core.errors import RunFolderError

CLASS_METRICS = ("precision", "recall", "f1")
OTHER_COLUMN = "(other superclasses)"


def _require(metrics: dict | None, key: str):
    if not isinstance(metrics, dict) or metrics.get(key) is None:
        raise RunFolderError(f"metrics.json has no '{key}'; this run cannot show this view")
    return metrics[key]


def class_names(metrics: dict) -> list[str]:
    names = _require(metrics, "class_names")
    if not isinstance(names, list) or not names:
        raise RunFolderError("metrics.json: 'class_names' must be a non-empty list")
    return [str(n) for n in names]


def has_superclasses(metrics: dict | None) -> bool:
    return bool(isinstance(metrics, dict) and metrics.get("superclass_names")
                and metrics.get("output_to_superclass") is not None)


def superclass_names(metrics: dict) -> list[str]:
    return [str(n) for n in _require(metrics, "superclass_names")]


def output_to_superclass(metrics: dict) -> np.ndarray:
    """For every output class, the index of its superclass."""
    mapping = np.asarray(_require(metrics, "output_to_superclass"), dtype=np.int64)
    if mapping.shape != (len(class_names(metrics)),) or (
            mapping.size and (mapping.min() < 0
                              or mapping.max() >= len(superclass_names(metrics)))):
        raise RunFolderError("metrics.json: 'output_to_superclass' does not match the classes")
    return mapping


def confusion_matrix(metrics: dict, level: str = "output") -> np.ndarray:
    """The saved confusion matrix, rows = true class, columns = predicted class.

    ``level="output"``: the run's own classes; ``"superclass"``: the 20x20 matrix.
    """
    key = "confusion" if level == "output" else "confusion_superclass"
    names = class_names(metrics) if level == "output" else superclass_names(metrics)
    try:
        matrix = np.asarray(_require(metrics, key))
    except ValueError:  # ragged rows
        matrix = np.zeros(0)
    if matrix.shape != (len(names), len(names)) or not np.issubdtype(matrix.dtype, np.number):
        raise RunFolderError(f"metrics.json: '{key}' is not a {len(names)}x{len(names)} "
                             "matrix of counts")
    return matrix.astype(np.int64)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall per true class); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def per_class_table(metrics: dict, superclasses: list[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (optionally only some superclasses)."""
    rows = _require(metrics, "per_class")
    frame = pd.DataFrame(rows)
    missing = {"class", *CLASS_METRICS, "support"} - set(frame.columns)
    if missing:
        raise RunFolderError(f"metrics.json: 'per_class' lacks {sorted(missing)}")
    if "superclass" not in frame.columns:
        frame["superclass"] = None
    frame = frame[["class", "superclass", *CLASS_METRICS, "support"]]
    if superclasses:
        frame = frame[frame["superclass"].isin(superclasses)]
    return frame.reset_index(drop=True)


def weakest_and_strongest(metrics: dict, metric: str = "f1", count: int = 10
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``count`` lowest and the ``count`` highest classes by ``metric``, disjoint
    (ties: by class name).

    Classes without test images (support 0) are left out: their scores mean nothing.
    """
    if metric not in CLASS_METRICS:
        raise ValueError(f"metric must be one of {CLASS_METRICS}, got {metric!r}")
    table = per_class_table(metrics)
    table = table[table["support"] > 0]
    count = max(0, min(count, len(table) // 2 if len(table) > 1 else len(table)))
    ordered = table.sort_values([metric, "class"], kind="stable")
    weakest = ordered.head(count)
    # Drawn from the other classes, so that ties (many classes at 0) never list one twice.
    strongest = ordered.drop(weakest.index).sort_values(
        [metric, "class"], ascending=[False, True], kind="stable").head(count)
    return weakest.reset_index(drop=True), strongest.reset_index(drop=True)


def class_difference(metrics_a: dict, metrics_b: dict, metric: str = "f1") -> pd.DataFrame:
    """Per class: ``metric`` in run A, in run B, and B - A; biggest gains first.

    Only runs over the same classes compare (same data set and label set).
    """
    if metric not in CLASS_METRICS:
        raise ValueError(f"metric must be one of {CLASS_METRICS}, got {metric!r}")
    if class_names(metrics_a) != class_names(metrics_b):
        raise RunFolderError("the two runs have different classes (another data set or label "
                             "set); choose two runs over the same classes")
    a = per_class_table(metrics_a)
    b = per_class_table(metrics_b)
    frame = pd.DataFrame({"class": a["class"], "superclass": a["superclass"],
                          "run A": a[metric], "run B": b[metric]})
    frame["difference"] = frame["run B"] - frame["run A"]
    return frame.sort_values(["difference", "class"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)


def most_confused_pairs(metrics: dict, count: int = 10, level: str = "output") -> pd.DataFrame:
    """The largest off-diagonal cells: true class, predicted class, count, share of true."""
    matrix = confusion_matrix(metrics, level)
    names = class_names(metrics) if level == "output" else superclass_names(metrics)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    true_idx, pred_idx = np.nonzero(off)
    counts = off[true_idx, pred_idx]
    order = np.lexsort((pred_idx, true_idx, -counts))[:count]
    totals = matrix.sum(axis=1)
    rows = [{"true class": names[t], "predicted as": names[p], "count": int(off[t, p]),
             "share of true class %": round(100.0 * off[t, p] / totals[t], 1),
             "true index": int(t), "predicted index": int(p)}
            for t, p in zip(true_idx[order], pred_idx[order], strict=True)]
    return pd.DataFrame(rows, columns=["true class", "predicted as", "count",
                                       "share of true class %", "true index",
                                       "predicted index"])


def fine_confusion_within(metrics: dict, superclass: str
                          ) -> tuple[np.ndarray, list[str], list[str]]:
    """The fine-class confusion among the classes of one superclass.

    Returns (matrix, row labels, column labels): rows are the superclass's fine classes,
    columns the same classes plus one column counting predictions outside the superclass,
    so every row sums to the class's test images.
    """
    if metrics.get("label_set") == "coarse":
        raise RunFolderError("this run predicts superclasses only; choose a fine-label run "
                             "for the fine-class confusion")
    names = class_names(metrics)
    supers = superclass_names(metrics)
    if superclass not in supers:
        raise RunFolderError(f"unknown superclass {superclass!r}")
    mapping = output_to_superclass(metrics)
    members = np.flatnonzero(mapping == supers.index(superclass))
    full = confusion_matrix(metrics, "output")
    inside = full[np.ix_(members, members)]
    outside = full[members].sum(axis=1) - inside.sum(axis=1)
    matrix = np.concatenate([inside, outside[:, None]], axis=1)
    labels = [names[i] for i in members]
    return matrix, labels, [*labels, OTHER_COLUMN]
