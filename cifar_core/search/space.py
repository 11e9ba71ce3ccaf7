"""Model 7's search space and the rule that turns stage 1's top trials into stage 2's grid.

Pure logic, no training: what is searched, and which grid follows from which results.

The space covers the head and its training, as the report's model 7 did; ReLU stays (the
report kept it for speed). Every hyperparameter is a list of values, so that stage 2's grid
is made of values stage 1 actually tried:

- ``units_1``, ``units_2``: the two hidden Dense layers (models 3-6 use 128 and 64);
- ``dropout``: after each hidden layer (models 4-6: 0.2);
- ``learning_rate``: around model 6's 1e-4, from 3e-5 to 3e-4. The chosen value also
  fine-tunes the whole base at the end, and at 1e-3 and above fine-tuning falls to chance
  (see ``cifar_core.models.specs``), so the range stops below it;
- ``optimizer``: Adam (models 1-6) or RMSprop.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, replace

import keras_tuner

SEARCH_SPACE: dict[str, tuple] = {
    "units_1": (64, 128, 256, 512, 1024),
    "units_2": (32, 64, 128, 256),
    "dropout": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    "learning_rate": (3e-5, 1e-4, 3e-4),
    "optimizer": ("adam", "rmsprop"),
}
HYPERPARAMETERS = tuple(SEARCH_SPACE)
PROTOCOL_HP = "protocol"  # a Fixed hyperparameter: the fingerprint of the search settings
TOP_K = 3  # stage 2 looks at the best three trials of stage 1, as the report did


def stage1_hyperparameters(protocol: str) -> keras_tuner.HyperParameters:
    """Stage 1 (RandomSearch): every value of every hyperparameter is possible."""
    hp = keras_tuner.HyperParameters()
    hp.Fixed(PROTOCOL_HP, protocol)
    for name, values in SEARCH_SPACE.items():
        hp.Choice(name, list(values), ordered=name != "optimizer")
    return hp


@dataclass(frozen=True)
class GridPlan:
    """Stage 2: a grid over ``varying`` (name -> values), everything else ``fixed``."""

    varying: dict[str, tuple]
    fixed: dict[str, object]
    from_trials: tuple[str, ...]  # the stage-1 trial ids the plan was derived from

    @property
    def size(self) -> int:
        size = 1
        for values in self.varying.values():
            size *= len(values)
        return size

    def combinations(self) -> list[dict]:
        """Every combination, in GridSearch's order (the last hyperparameter varies fastest)."""
        names = [n for n in HYPERPARAMETERS if n in self.varying]
        return [{**self.fixed, **dict(zip(names, combo, strict=True))}
                for combo in itertools.product(*(self.varying[n] for n in names))]

    def to_dict(self) -> dict:
        return {"varying": {k: list(v) for k, v in self.varying.items()},
                "fixed": dict(self.fixed), "from_trials": list(self.from_trials),
                "size": self.size}

    @classmethod
    def from_dict(cls, data: dict) -> GridPlan:
        return cls(varying={k: tuple(v) for k, v in data["varying"].items()},
                   fixed=dict(data["fixed"]), from_trials=tuple(data["from_trials"]))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def plan_grid(ranked: list[tuple[str, dict]]) -> GridPlan:
    """The grid of stage 2 from stage 1's trials, best first (``(trial_id, values)``).

    Every hyperparameter whose values differ among the top three trials is searched over the
    values they took (in the order of ``SEARCH_SPACE``); every other one is fixed at the value
    the top three share. With fewer than three finished trials, the ones there are count.
    """
    if not ranked:
        raise ValueError("stage 1 finished no trial; there is nothing to refine")
    top = ranked[:TOP_K]
    varying, fixed = {}, {}
    for name in HYPERPARAMETERS:
        seen = {values[name] for _, values in top}
        if len(seen) > 1:
            varying[name] = tuple(v for v in SEARCH_SPACE[name] if v in seen)
        else:
            fixed[name] = top[0][1][name]
    return GridPlan(varying=varying, fixed=fixed, from_trials=tuple(t for t, _ in top))


def stage2_hyperparameters(plan: GridPlan, protocol: str) -> keras_tuner.HyperParameters:
    """Stage 2 (GridSearch): a Choice for each varying hyperparameter, Fixed for the rest."""
    hp = keras_tuner.HyperParameters()
    hp.Fixed(PROTOCOL_HP, protocol)
    for name in HYPERPARAMETERS:
        if name in plan.varying:
            hp.Choice(name, list(plan.varying[name]), ordered=name != "optimizer")
        else:
            hp.Fixed(name, plan.fixed[name])
    return hp


def searched_values(values: dict) -> dict:
    """Only the hyperparameters of ``SEARCH_SPACE``, as plain Python values."""
    out = {}
    for name in HYPERPARAMETERS:
        value = values[name]
        out[name] = str(value) if name == "optimizer" else (
            float(value) if isinstance(SEARCH_SPACE[name][0], float) else int(value))
    return out


def apply_values(config, values: dict):
    """``config`` with the head and training values of a trial (a ``TrainConfig``)."""
    values = searched_values(values)
    return replace(config, hidden_units=(values["units_1"], values["units_2"]),
                   dropout=values["dropout"], learning_rate=values["learning_rate"],
                   optimizer=values["optimizer"])
