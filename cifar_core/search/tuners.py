"""keras-tuner glue: the oracles that choose values, and a tuner whose trial is a CV run.

- Stage 1 uses keras-tuner's ``RandomSearchOracle`` (what ``keras_tuner.RandomSearch`` runs).
- Stage 2 uses keras-tuner's ``GridSearchOracle`` (what ``keras_tuner.GridSearch`` runs), with
  one change: the next combination is the first of the grid not tried yet, derived from the
  saved trials, so a search reloaded with ``overwrite=False`` goes on where it stopped (the
  stock oracle keeps its queue of next combinations in memory only and, once reloaded, stops).
- Both write their state (``oracle.json``, ``trial_*/trial.json``) atomically, like every
  file of a run folder, so a stop at any moment leaves a state that reloads.
- ``CrossValidatedTuner.run_trial`` hands the values to a ``TrialRunner`` and reports the
  mean validation accuracy over folds (the objective) plus each fold's score and the seconds.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

import keras_tuner
from keras_tuner.errors import FatalError
from keras_tuner.oracles import GridSearchOracle, RandomSearchOracle

from cifar_core.errors import CifarCoreError, RunStopped
from cifar_core.runs.files import atomic_write_text
from cifar_core.search.space import PROTOCOL_HP

OBJECTIVE = keras_tuner.Objective("val_accuracy", direction="max")
RUNNING = keras_tuner.engine.trial.TrialStatus.RUNNING
STOPPED = keras_tuner.engine.trial.TrialStatus.STOPPED


def _write_state(path: str | os.PathLike, state: dict) -> None:
    atomic_write_text(Path(path), json.dumps(state))


class _AtomicStateMixin:
    def save(self):
        _write_state(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _write_state(Path(self._get_trial_dir(trial.trial_id)) / "trial.json", trial.get_state())


class StageOneOracle(_AtomicStateMixin, RandomSearchOracle):
    """keras-tuner's random search, saving its state atomically."""

    def exhausted(self) -> bool:
        """Every trial it will create exists (a reloaded, finished stage)."""
        return bool(self.max_trials) and len(self.trials) >= self.max_trials


class StageTwoOracle(_AtomicStateMixin, GridSearchOracle):
    """keras-tuner's grid search over a space of ``Choice``/``Fixed`` values, resumable."""

    def exhausted(self) -> bool:
        if self.max_trials and len(self.trials) >= self.max_trials:
            return True
        return self.populate_space("probe")["status"] == STOPPED  # no side effects

    def populate_space(self, trial_id):
        space = self.get_space().space
        names = [hp.name for hp in space]
        for combination in itertools.product(*(hp.values for hp in space)):
            values = dict(zip(names, combination, strict=True))
            if not self._duplicate(values):
                return {"status": RUNNING, "values": values}
        return {"status": STOPPED, "values": None}


def stage_oracle(stage: int, hyperparameters: keras_tuner.HyperParameters, *, max_trials,
                 seed: int):
    common = dict(objective=OBJECTIVE, hyperparameters=hyperparameters, seed=seed,
                  allow_new_entries=False, tune_new_entries=False,
                  max_consecutive_failed_trials=3)
    if stage == 1:
        return StageOneOracle(max_trials=max_trials, **common)
    return StageTwoOracle(max_trials=max_trials, **common)


class CrossValidatedTuner(keras_tuner.Tuner):
    """A tuner whose trial is ``runner.run(values, stage)``: k-fold cross-validation.

    ``runner`` may be None on the chief of a distributed search, which never runs trials.
    Errors the user must act on (a stop request, bad settings, another search's trial) end
    the search instead of being recorded as a failed trial.
    """

    def __init__(self, oracle, *, stage: int, protocol: str, runner=None,
                 on_trial_begin: Callable | None = None, on_trial_end: Callable | None = None,
                 on_fold: Callable | None = None, **kwargs):
        self.stage, self.protocol, self.runner = stage, protocol, runner
        self._on_begin, self._on_end, self._on_fold = on_trial_begin, on_trial_end, on_fold
        super().__init__(oracle=oracle, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        if values.get(PROTOCOL_HP) != self.protocol:
            raise FatalError(
                f"trial {trial.trial_id} belongs to another search (protocol "
                f"{values.get(PROTOCOL_HP)!r}, this process runs {self.protocol!r}): chief "
                "and workers need the same data, weights, labels, seed and search settings")
        try:
            result = self.runner.run(
                values, self.stage,
                on_fold=(lambda i, fold: self._on_fold(trial, i, fold)) if self._on_fold
                else None)
        except CifarCoreError as exc:
            raise FatalError(str(exc)) from exc
        except Exception as exc:
            if _is_stop(exc):
                raise FatalError(str(exc) or "stopped") from exc
            raise
        return result.metrics()

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        if self._on_begin:
            self._on_begin(self.stage, trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self._on_end:
            self._on_end(self.stage, trial)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _write_state(self._get_tuner_fname(), self.get_state())


def _is_stop(exc: BaseException) -> bool:
    return isinstance(exc, RunStopped)


def unwrap_fatal(exc: FatalError) -> BaseException:
    """The error a ``FatalError`` stands for (a stop request, a user error), else itself."""
    cause = exc.__cause__
    return cause if cause is not None else exc
