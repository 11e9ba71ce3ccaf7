"""TensorBoard event files for a run folder: ``<run>/tensorboard/``.

So that ``tensorboard --logdir artifacts/runs`` shows every run side by side, each run gets
one event file holding:

* the per-epoch scalars of ``history.csv`` (``loss``, ``accuracy``, ``val_loss``,
  ``val_accuracy``, ``seconds``), step = epoch, under the column's own name;
* the run's parameters through the HParams plugin (``cifar_core.runs.params``; the trial is
  named by the run id), so the HParams dashboard tabulates runs by configuration;
* the final test metrics of ``metrics.json`` (``test_top1``, ``test_top5``,
  ``test_superclass_top1``), at the run's last epoch.

The pipeline writes them when a run's results are in (``cifar_core.pipeline``); ``cifar-core
tensorboard-export`` writes them for runs made before. Writing again replaces the folder as a
whole (written beside it, then renamed into place), so an export run twice never doubles the
points TensorBoard draws, and a reader never sees half of one. Everything comes from the run's
own files, so the events always say what the folder says.

TensorFlow is imported inside the functions: this module sits in the ``runs`` layer, which the
dashboard imports without wanting TensorFlow loaded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from cifar_core.errors import RunFolderError
from cifar_core.runs.files import read_json
from cifar_core.runs.params import flat_params
from cifar_core.runs.store import (
    CONFIG_FILE,
    HISTORY_COLUMNS,
    HISTORY_FILE,
    METRICS_FILE,
    SCHEMA_VERSION,
    read_history,
)

TENSORBOARD_DIR = "tensorboard"
FINAL_METRICS = ("test_top1", "test_top5", "test_superclass_top1")
HISTORY_SCALARS = tuple(c for c in HISTORY_COLUMNS if c != "epoch")


def _read_schema_json(path: Path) -> dict:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise RunFolderError(f"{path.name}: missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path.name}: unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise RunFolderError(f"{path.name}: schema version {version!r}, this version of "
                             f"cifar_core reads {SCHEMA_VERSION}")
    return data


def run_contents(run_dir: Path) -> tuple[dict, dict, list[dict]]:
    """``config.json``, ``metrics.json`` and ``history.csv`` of a finished run, checked.

    Raises ``RunFolderError`` naming the first file that is missing, unreadable or of
    another schema: the events would otherwise describe a run that is not there.
    """
    run_dir = Path(run_dir)
    config = _read_schema_json(run_dir / CONFIG_FILE)
    metrics = _read_schema_json(run_dir / METRICS_FILE)
    if not (run_dir / HISTORY_FILE).is_file():
        raise RunFolderError(f"{HISTORY_FILE}: missing")
    try:
        history = read_history(run_dir)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{HISTORY_FILE}: unreadable ({type(exc).__name__})") from None
    if not history or any(row.get("epoch") is None for row in history):
        raise RunFolderError(f"{HISTORY_FILE}: no epochs")
    return config, metrics, history


def hparams_of(config: dict) -> dict:
    """The HParams plugin's values: scalars only (it takes no None)."""
    return {name: value for name, value in flat_params(config).items()
            if isinstance(value, (bool, int, float, str))}


def write_tensorboard(run_dir: Path) -> Path:
    """Write (or rewrite) ``<run_dir>/tensorboard/`` from the run's files; its path.

    Raises ``RunFolderError`` if the run lacks a results file; an error of TensorFlow's
    writer propagates (the pipeline turns either into a warning).
    """
    run_dir = Path(run_dir)
    config, metrics, history = run_contents(run_dir)
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    last_epoch = int(history[-1]["epoch"])
    staging = Path(tempfile.mkdtemp(prefix=f".{TENSORBOARD_DIR}-", dir=run_dir))
    try:
        writer = tf.summary.create_file_writer(str(staging))
        try:
            with writer.as_default():
                hp.hparams(hparams_of(config), trial_id=run_dir.name)
                for row in history:
                    for name in HISTORY_SCALARS:
                        if row.get(name) is not None:
                            tf.summary.scalar(name, row[name], step=int(row["epoch"]))
                for name in FINAL_METRICS:
                    if isinstance(metrics.get(name), (int, float)):
                        tf.summary.scalar(name, metrics[name], step=last_epoch)
        finally:
            writer.flush()
            writer.close()
        target = run_dir / TENSORBOARD_DIR
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{TENSORBOARD_DIR}-old-", dir=run_dir))
            target.rename(old / TENSORBOARD_DIR)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
