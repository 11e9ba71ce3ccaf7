"""Run against run: every class's recall (or precision, F1) under each model's counted run, in
one table, so "which classes did transfer learning fix, and which did nothing fix" reads off
one heatmap. From the runs' ``metrics.json``; nothing here loads a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cifar_core.analysis.classes import CLASS_METRICS, class_names, per_class_table
from cifar_core.analysis.names import readable
from cifar_core.errors import RunFolderError


@dataclass(frozen=True)
class ClassByModel:
    """``values``: one row a class (in words; superclass by superclass where there are
    superclasses, so neighbours share one), one column a run's label, the metric in [0, 1].
    ``classes`` are the raw class names in row order, ``run_ids`` the runs in column order."""

    values: pd.DataFrame
    superclasses: list[str | None]
    classes: list[str]
    run_ids: list[str]
    metric: str


def class_by_model(columns: Sequence[tuple[str, str, dict]],
                   metric: str = "recall") -> ClassByModel:
    """The ``metric`` of every class for each ``(label, run id, metrics)`` column.

    The runs must share one class list (a chart never mixes data sets or label sets); a
    ``RunFolderError`` names the run that does not.
    """
    if metric not in CLASS_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(CLASS_METRICS)}")
    if not columns:
        raise ValueError("no runs to compare")
    names = class_names(columns[0][2])
    for _, run_id, metrics in columns[1:]:
        if class_names(metrics) != names:
            raise RunFolderError(f"run {run_id} has other classes than run {columns[0][1]}: "
                                 "runs over different class lists are not compared")
    first = per_class_table(columns[0][2])
    order = sorted(range(len(names)),
                   key=lambda i: (str(first["superclass"][i] or ""), names[i]))
    values = pd.DataFrame({label: per_class_table(metrics)[metric].to_numpy()[order]
                           for label, _, metrics in columns},
                          index=[readable(names[i]) for i in order])
    return ClassByModel(values=values,
                        superclasses=[first["superclass"][i] for i in order],
                        classes=[names[i] for i in order],
                        run_ids=[run_id for _, run_id, _ in columns], metric=metric)


def sorted_by_gain(table: ClassByModel, before: str, after: str) -> ClassByModel:
    """The rows in order of the gain from column ``before`` to column ``after``, the largest
    first (ties by the order they had)."""
    for label in (before, after):
        if label not in table.values.columns:
            raise ValueError(f"no column {label!r}; the columns are "
                             f"{list(table.values.columns)}")
    gain = table.values[after] - table.values[before]
    order = sorted(range(len(gain)), key=lambda i: -gain.iloc[i])
    return ClassByModel(values=table.values.iloc[order],
                        superclasses=[table.superclasses[i] for i in order],
                        classes=[table.classes[i] for i in order], run_ids=table.run_ids,
                        metric=table.metric)


def fixed_and_unfixed(table: ClassByModel, before: str, after: str, *,
                      threshold: float = 0.5) -> tuple[list[str], list[str]]:
    """Classes (in words) below ``threshold`` under ``before`` and at or above it under
    ``after`` (fixed), and those below it under every column (nothing fixed them)."""
    values = table.values
    fixed = values.index[(values[before] < threshold) & (values[after] >= threshold)]
    never = values.index[(values < threshold).all(axis=1)]
    return list(fixed), list(never)
