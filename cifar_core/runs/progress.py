"""A run's progress record (``run.json``'s ``progress``): what it holds and what it says.

Every long phase reports itself the same way, through ``RunWriter.report_phase``:

=======================  ===================================================================
``phase``                the phase id (a key of ``PHASE_LABELS``)
``done``, ``total``      units of work finished and in all (``done`` may be fractional: a
                         search trial two folds of three into it is 2/3 of a trial done)
``unit``                 what is counted (a key of ``UNIT_FORMATS``)
``phase_started_ts``     when this phase started (Unix time), and ``phase_started_done`` how
                         much was done then (a resumed search starts part done)
``updated_ts``           when ``done`` was last updated
=======================  ===================================================================

so a reader derives the fraction and the ETA of any phase without knowing which it is.
Training adds ``epoch`` (in progress, 1-based), ``epochs``, ``last`` (the last finished
epoch's history row) and ``eta_seconds``. Records written before phases had counts (only
``step`` / ``steps``, or none) still read: ``step`` / ``steps`` stand for ``done`` /
``total``, and a phase without a start time has no ETA.

Kept free of TensorFlow and of the job system: the pipeline (which records where a stopped
run stopped) and the dashboard both use it.
"""

from __future__ import annotations

import math
import time

# Phase ids as a person reads them: the Train page's progress text, the stop message.
PHASE_LABELS = {
    "starting": "starting up (loading TensorFlow and the data)",
    "loading data": "loading the data",
    "features": "computing the frozen base's features",
    "search": "searching hyperparameters",  # records written before the stages had ids
    "search_stage_1": "search stage 1 (random search)",
    "search_stage_2": "search stage 2 (grid search)",
    "training": "training",
    "evaluating": "evaluating on the test set",
    "saving": "saving the model and results",
    "done": "finishing",
}

# How a count reads. "{done}": units finished ("24,250/120,000 images", "batch 40/79");
# "{current}": the unit in progress ("trial 3/10" while two trials are finished).
UNIT_FORMATS = {
    "images": "{done}/{total} images",
    "batches": "batch {done}/{total}",
    "trials": "trial {current}/{total}",
}

# The fields of one phase's count: dropped when another phase starts.
PHASE_COUNT_FIELDS = ("done", "total", "unit", "phase_started_ts", "phase_started_done",
                      "updated_ts", "step", "steps", "eta_seconds")


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def phase_label(phase: str | None) -> str:
    """The words for a phase id; an id this version does not know reads as itself."""
    if not phase:
        return PHASE_LABELS["starting"]
    return PHASE_LABELS.get(phase, str(phase).replace("_", " "))


def phase_counts(progress: dict | None) -> tuple[float | None, float | None]:
    """``(done, total)`` of the phase in progress, or ``(None, None)`` where it has none.

    Reads ``done`` / ``total``, or the older ``step`` / ``steps``; a count that is not a
    number, a total that is not positive, or a negative done is no count.
    """
    progress = progress if isinstance(progress, dict) else {}
    if "done" in progress or "total" in progress:
        done, total = _number(progress.get("done")), _number(progress.get("total"))
    else:
        done, total = _number(progress.get("step")), _number(progress.get("steps"))
    if done is None or total is None or total <= 0 or done < 0:
        return None, None
    return done, total


def phase_fraction(progress: dict | None) -> float | None:
    """How much of the phase in progress is done, 0..1 (None without a count)."""
    done, total = phase_counts(progress)
    return None if done is None else min(done / total, 1.0)


def phase_rate(progress: dict | None) -> float | None:
    """Units per second since the phase started (None until something was done in it)."""
    progress = progress if isinstance(progress, dict) else {}
    done, _ = phase_counts(progress)
    started, updated = _number(progress.get("phase_started_ts")), _number(
        progress.get("updated_ts"))
    started_done = _number(progress.get("phase_started_done")) or 0.0
    if done is None or started is None or updated is None or updated <= started:
        return None
    rate = (done - started_done) / (updated - started)
    return rate if rate > 0 else None


def phase_eta(progress: dict | None, now: float | None = None) -> float | None:
    """Seconds left in the phase at its rate so far, counted from ``now`` (None: unknown)."""
    progress = progress if isinstance(progress, dict) else {}
    done, total = phase_counts(progress)
    rate = phase_rate(progress)
    if rate is None:
        return None
    now = time.time() if now is None else now
    since_update = max(now - (_number(progress.get("updated_ts")) or now), 0.0)
    return max((total - done) / rate - since_update, 0.0)


def _thousands(value: float) -> str:
    return f"{int(value):,}"


def describe_count(done: float | None, total: float | None, unit: str | None) -> str:
    """``(24250, 120000, "images")`` -> ``"24,250/120,000 images"``; "" without a count."""
    if done is None or total is None:
        return ""
    current = min(int(done) + 1, int(total))
    template = UNIT_FORMATS.get(unit or "", "{done}/{total}" + (f" {unit}" if unit else ""))
    return template.format(done=_thousands(done), total=_thousands(total),
                           current=_thousands(current))


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; ``None`` -> ``"unknown"``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def where_stopped(run: dict | None, epochs_done: int = 0) -> str:
    """Where a run was when it stopped, to follow "stopped": "at epoch 3 of 40 (2
    finished)", "while computing the frozen base's features (24,250/120,000 images)",
    "in search stage 1 (random search), trial 3/10", "while queued".

    ``run`` is the run record (``run.json``) as it was when the stop came; ``epochs_done``
    the epochs in ``history.csv``, if the caller knows better than the record.
    """
    run = run if isinstance(run, dict) else {}
    progress = run.get("progress") if isinstance(run.get("progress"), dict) else {}
    phase = progress.get("phase")
    # No phase yet: it never started (the worker notes "starting" once it holds the slot).
    if not phase or (run.get("status") == "queued" and phase != "starting"):
        return "while queued"
    last = progress.get("last") if isinstance(progress.get("last"), dict) else {}
    finished = max(int(_number(last.get("epoch")) or 0), int(epochs_done or 0))
    epochs = _number(progress.get("epochs"))
    if phase == "training" and epochs:
        current = min(finished + 1, int(epochs))
        where = f"at epoch {current} of {int(epochs)}"
        if finished >= epochs:
            return f"after epoch {int(epochs)} of {int(epochs)}"
        return where + (f" ({finished} finished)" if finished else "")
    label = phase_label(phase)
    # A label that names an activity ("computing ...") reads "while ..."; a stage, "in ...".
    where = f"while {label}" if label.split(" ", 1)[0].endswith("ing") else f"in {label}"
    count = describe_count(*phase_counts(progress), progress.get("unit"))
    if not count:
        return where
    return where + (f", {count}" if where.endswith(")") else f" ({count})")
