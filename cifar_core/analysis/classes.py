"""Per-class views of one run's ``metrics.json``: strengths, weaknesses, confusions.

Every function reads the metrics dict written by ``cifar_core.training.evaluate`` and
refuses, with a ``RunFolderError`` naming what is missing, metrics that lack what it needs
(a run folder edited by hand or written by other code must not crash a page).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cifar_core.analysis.names import readable
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


METRIC_NAMES = {"precision": "precision", "recall": "recall", "f1": "F1"}


def metric_name(metric: str) -> str:
    """``"f1"`` -> ``"F1"``: a metric as a sentence names it."""
    return METRIC_NAMES.get(metric, metric)


@dataclass(frozen=True)
class ClassExtremes:
    """The weakest and strongest classes by one metric, and what ties hide.

    ``weakest`` holds only classes below the best value and ``strongest`` only classes above
    every weakest one shown, so no class (and no value) is ever called both weak and strong.
    When every class shares one value both are empty and ``tied_value`` holds it. Where the
    cut of a list falls inside a tie, the classes shown are the first of the tie by name, and
    ``notes`` says so.
    """

    weakest: pd.DataFrame
    strongest: pd.DataFrame
    metric: str
    classes: int  # classes ranked (those with test images)
    tied_value: float | None = None  # the value every ranked class shares
    notes: tuple[str, ...] = ()

    @property
    def all_tied(self) -> bool:
        return self.tied_value is not None

    @property
    def message(self) -> str | None:
        """One plain sentence for a caption: the tie, or the partial ties at the cuts."""
        if self.classes == 0:
            return "No class has test images: there is nothing to rank."
        if self.all_tied:
            return (f"All {self.classes} classes have {metric_name(self.metric)} "
                    f"{100 * self.tied_value:.1f}%: no class is weaker or stronger than "
                    "another.")
        return " ".join(self.notes) or None


def _cut_note(shown: pd.DataFrame, ranked: pd.DataFrame, metric: str, side: str) -> str | None:
    """Say so when the last class of a list shares its value with classes left out."""
    if shown.empty:
        return None
    last = shown[metric].iloc[-1]
    tied = int(np.isclose(ranked[metric], last, rtol=0, atol=1e-12).sum())
    listed = int(np.isclose(shown[metric], last, rtol=0, atol=1e-12).sum())
    if tied <= listed:
        return None
    return (f"{tied} classes have {metric_name(metric)} {100 * last:.1f}% at the cut of the "
            f"{side} list; the {listed} listed are the first of them by name.")


def in_words(frame: pd.DataFrame, columns: tuple[str, ...] = ("class", "superclass",
                                                               "true class", "predicted as")
             ) -> pd.DataFrame:
    """A copy of ``frame`` for display: its class and superclass columns in words.

    Data and CSV files keep the raw names; only tables a person reads go through this.
    """
    shown = frame.copy()
    for column in columns:
        if column in shown.columns:
            shown[column] = [value if pd.isna(value) else readable(value)
                             for value in shown[column]]
    return shown


def weakest_and_strongest(metrics: dict, metric: str = "f1", count: int = 10
                          ) -> ClassExtremes:
    """The up to ``count`` lowest and ``count`` highest classes by ``metric``, disjoint.

    Classes without test images (support 0) are left out: their scores mean nothing. A
    class counts as weak only below the best value, and as strong only above the weakest
    listed, so ties (every class at 100%, many at 0) never show one class, or one value, on
    both sides.
    """
    if metric not in CLASS_METRICS:
        raise ValueError(f"metric must be one of {CLASS_METRICS}, got {metric!r}")
    table = per_class_table(metrics)
    table = table[table["support"] > 0]
    empty = table.iloc[0:0].reset_index(drop=True)
    if table.empty:
        return ClassExtremes(empty, empty, metric, 0)
    values = table[metric].astype(float)
    low, high = float(values.min()), float(values.max())
    if np.isclose(low, high, rtol=0, atol=1e-12):
        return ClassExtremes(empty, empty, metric, len(table), tied_value=high)
    count = max(0, min(count, len(table) // 2))
    ordered = table.sort_values([metric, "class"], kind="stable")
    weakest = ordered[~np.isclose(ordered[metric], high, rtol=0, atol=1e-12)].head(count)
    ceiling = float(weakest[metric].max()) if len(weakest) else low
    above = ordered[ordered[metric] > ceiling + 1e-12]
    strongest = above.sort_values([metric, "class"], ascending=[False, True],
                                  kind="stable").head(count)
    notes = tuple(note for note in (
        _cut_note(weakest, ordered, metric, "weakest"),
        _cut_note(strongest, ordered, metric, "strongest")) if note)
    return ClassExtremes(weakest.reset_index(drop=True), strongest.reset_index(drop=True),
                         metric, len(table), notes=notes)


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
