"""Model 7's search trials (``trials.csv`` in its run folder), read defensively.

The search writes one row per trial: stage, trial id, each hyperparameter, the score of
every cross-validation fold, their mean and the seconds it took. Column names are matched
loosely (case, spaces, a few synonyms) and bad rows are dropped with a note, so a CSV from an
older or newer search, or one cut short by a stopped run, still shows what it can.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_core.errors import RunFolderError

TRIALS_FILE = "trials.csv"
MAX_TRIALS_BYTES = 20 * 2**20
STAGE_NAMES = ("stage",)
TRIAL_NAMES = ("trial_id", "trial", "id")
MEAN_NAMES = ("mean", "mean_score", "score", "mean_val_accuracy", "mean_accuracy",
              "objective", "val_accuracy")
SECONDS_NAMES = ("seconds", "time_seconds", "duration_seconds", "elapsed_seconds", "duration")
FOLD_PATTERN = re.compile(r"(^|_)fold_?\d+($|_)")  # fold_1, fold1, score_fold_2, fold_3_acc


def _normalize(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


@dataclass
class Trials:
    """The trials as a table plus which column plays which role."""

    frame: pd.DataFrame  # normalized column names, one row per trial
    hyperparameters: list[str]
    fold_columns: list[str]
    score: str  # the mean score column
    stage: str | None = None
    trial: str | None = None
    seconds: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def stages(self) -> list:
        return [] if self.stage is None else list(dict.fromkeys(self.frame[self.stage]))


def _first(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for name in names for c in columns if c == name), None)


def parse_trials(text: str, source: str = TRIALS_FILE) -> Trials:
    """Parse the CSV text of ``trials.csv``; ``RunFolderError`` when nothing is usable."""
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise RunFolderError(f"{source}: not a readable CSV ({exc})") from None
    frame.columns = [_normalize(c) for c in frame.columns]
    frame = frame.loc[:, ~frame.columns.duplicated()]
    columns = list(frame.columns)
    notes: list[str] = []
    stage, trial = _first(columns, STAGE_NAMES), _first(columns, TRIAL_NAMES)
    seconds = _first(columns, SECONDS_NAMES)
    folds = [c for c in columns if FOLD_PATTERN.search(c)]
    score = _first(columns, MEAN_NAMES)
    for column in folds + [c for c in (score, seconds) if c]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if score is None:
        if not folds:
            raise RunFolderError(f"{source}: no mean score and no fold score columns "
                                 f"(columns: {', '.join(columns) or 'none'})")
        score = "mean"
        frame[score] = frame[folds].mean(axis=1)
        notes.append("no mean column: the mean of the fold scores is shown")
    bad = frame[score].isna() | ~np.isfinite(frame[score].astype(float))
    if bad.any():
        notes.append(f"{int(bad.sum())} trial(s) without a score were left out "
                     "(unfinished or failed)")
        frame = frame[~bad]
    if frame.empty:
        raise RunFolderError(f"{source}: no finished trials yet")
    roles = {stage, trial, seconds, score, *folds}
    hyperparameters = [c for c in columns if c not in roles and c != "mean"
                       and frame[c].notna().any()]
    return Trials(frame=frame.reset_index(drop=True), hyperparameters=hyperparameters,
                  fold_columns=folds, score=score, stage=stage, trial=trial,
                  seconds=seconds, notes=notes)


def read_trials(run_dir: str | Path) -> Trials | None:
    """The run's trials, or None when it has no ``trials.csv``."""
    file = Path(run_dir) / TRIALS_FILE
    if not file.is_file():
        return None
    if file.stat().st_size > MAX_TRIALS_BYTES:
        raise RunFolderError(f"{file}: larger than {MAX_TRIALS_BYTES // 2**20} MiB; refused")
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RunFolderError(f"{file}: unreadable ({exc.strerror})") from None
    return parse_trials(text, str(file))


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (list, tuple)):
        out[_normalize(prefix)] = value
        for i, inner in enumerate(value, start=1):
            _flatten(f"{prefix}_{i}", inner, out)
    else:
        out[_normalize(prefix)] = value


def _same(a, b) -> bool:
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-12))
    except (TypeError, ValueError):
        return str(a).strip().lower() == str(b).strip().lower()


STAGE_SEARCHES = {"1": "random search", "2": "grid search"}  # model 7's two stages


def stage_name(stage) -> str:
    """``2`` -> ``"stage 2 (grid search)"``; other stage values as they are written."""
    text = str(stage).strip()
    if text.endswith(".0"):  # a stage column read as floats
        text = text[:-2]
    search = STAGE_SEARCHES.get(text)
    return f"stage {text}" + (f" ({search})" if search else "")


def score_name(trials: Trials) -> str:
    """What the score column measures, in words."""
    return "mean validation accuracy" if "acc" in trials.score else "mean score"


def _stage_of(trials: Trials, index: int):
    return None if trials.stage is None else trials.frame.loc[index, trials.stage]


def _is_best_of_stage(trials: Trials, index: int) -> bool:
    frame = trials.frame
    peers = frame if trials.stage is None else frame[frame[trials.stage]
                                                     == frame.loc[index, trials.stage]]
    return bool(np.isclose(float(frame.loc[index, trials.score]),
                           peers[trials.score].astype(float).max()))


def _best_phrase(trials: Trials, index: int) -> str:
    """``"the best mean validation accuracy of stage 2 (grid search)"``."""
    stage = _stage_of(trials, index)
    where = f" of {stage_name(stage)}" if stage is not None else " of the search"
    return f"the best {score_name(trials)}{where}"


def _trial_name(trials: Trials, index: int) -> str:
    return f"trial {trials.frame.loc[index, trials.trial]}" if trials.trial else "the trial"


def chosen_trial(trials: Trials, config: dict | None) -> tuple[int | None, str]:
    """Row index of the chosen configuration in ``trials.frame`` and, in words, how it was
    chosen (for a caption: which trial, by what rule, and that the final model was trained
    with it).

    In order: a trial id recorded in ``config.json`` (``search.chosen_trial_id`` or
    ``best_trial_id``); the trial whose hyperparameters equal the configuration's; the best
    mean score of the last stage (the search's own rule).
    """
    frame = trials.frame
    search = (config or {}).get("search") or {}
    for key in ("chosen_trial_id", "best_trial_id", "trial_id"):
        wanted = search.get(key)
        if wanted is not None and trials.trial:
            hits = frame.index[frame[trials.trial].astype(str) == str(wanted)]
            if len(hits):
                index = int(hits[-1])
                rule = (_best_phrase(trials, index) if _is_best_of_stage(trials, index)
                        else "the search's choice")
                return index, (f"trial {wanted}, {rule}: the configuration the final model "
                               "was trained with (recorded in config.json)")
    values: dict = {}
    for part in ("hyperparameters", "search"):
        _flatten("", (config or {}).get(part) or {}, values)
    for key in ("chosen", "best_hyperparameters", "chosen_hyperparameters"):
        _flatten("", search.get(key) or {}, values)
    shared = [c for c in trials.hyperparameters if c in values and values[c] is not None]
    if shared:
        mask = np.ones(len(frame), dtype=bool)
        for column in shared:
            mask &= frame[column].map(lambda v, c=column: _same(v, values[c])).to_numpy()
        if mask.any():
            hits = frame[mask]
            best = int(hits[trials.score].astype(float).idxmax())
            names = [c.replace("_", " ") for c in shared]
            listed = (", ".join(names[:-1]) + " and " + names[-1]) if len(names) > 1 \
                else names[0]
            return best, (f"{_trial_name(trials, best)}, whose {listed} match the "
                          "configuration the final model was trained with (config.json)")
    last = frame if trials.stage is None else frame[frame[trials.stage] == trials.stages[-1]]
    best = int(last[trials.score].astype(float).idxmax())
    return best, (f"{_trial_name(trials, best)}, {_best_phrase(trials, best)}, the last stage "
                  "(the search's own rule; config.json records no choice)")


def stages_chosen_first(trials: Trials, chosen: int | None) -> list:
    """The stages in the order to show them: the chosen trial's stage first (where the
    answer is), then the others in the search's order."""
    stages = trials.stages
    if chosen is None or trials.stage is None or chosen not in trials.frame.index:
        return stages
    first = trials.frame.loc[chosen, trials.stage]
    return [first, *(s for s in stages if s != first)]
