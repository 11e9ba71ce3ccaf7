"""One training run end to end, recorded in a run folder: the path the CLI and jobs take.

load data -> write config -> train (history + heartbeat) -> evaluate -> save model,
predictions, metrics -> status ``completed``. Any error marks the run ``failed`` with its
message; SIGTERM or Ctrl-C marks it ``stopped``, with where it stopped ("stopped at epoch 3
of 40 (2 finished)"). ``completed`` is written last, so a run that says completed has every
file. Every long phase (the feature pass, the search's stages, epochs, the test set) reports
its count through ``RunWriter.report_phase``, so the dashboard shows progress and an ETA for
each the same way.

It sits above ``cifar_core.training`` and ``cifar_core.search`` (model 7 searches before it
trains, and the search trains through ``training``), below the CLI and the jobs that call it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from cifar_core.data import load_dataset
from cifar_core.data.dataset import Dataset
from cifar_core.errors import CifarCoreError, ConfigError, RunFolderError, RunStopped
from cifar_core.models.backbone import weights_identity
from cifar_core.runs.progress import where_stopped
from cifar_core.runs.provenance import environment_info
from cifar_core.runs.store import (
    EMBEDDING_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    RunWriter,
)
from cifar_core.runs.tensorboard import write_tensorboard
from cifar_core.training.config import TrainConfig
from cifar_core.training.evaluate import evaluate
from cifar_core.training.train import train

__all__ = ["RunStopped", "describe_config", "execute_run", "run_prefix"]

# Set by SIGTERM, and kept: the handler's exception is raised wherever the main thread happens
# to be, and can be lost there (inside a finalizer, which Python only prints) or turned into
# another error by library code. The flag makes the next progress callback stop the run, and
# makes whatever error ends it count as the user's stop.
_stop_requested = threading.Event()


def _raise_stopped(signum, frame):
    _stop_requested.set()
    raise RunStopped(f"stopped by signal {signal.Signals(signum).name}")


def _stop_if_requested() -> None:
    """Raise ``RunStopped`` at a safe point if a SIGTERM arrived whose exception got lost."""
    if _stop_requested.is_set():
        raise RunStopped("stopped by signal SIGTERM")


def _record_stop(writer: RunWriter, epochs_done: int) -> RunStopped:
    """Record the run ``stopped`` with where it was; the plain ``RunStopped`` to raise."""
    where = where_stopped(writer.record, epochs_done)
    _record_end(writer, "stopped", f"stopped {where}")
    return RunStopped(f"Stopped by the user {where}")


def _record_end(writer: RunWriter, status: str, error: str) -> None:
    """Mark the run ended; if even that cannot be written (full disk), the stale heartbeat
    makes readers show it as failed, so the original error is the one raised."""
    with contextlib.suppress(OSError):
        writer.set_status(status, error=error)


def _write_tensorboard(writer: RunWriter, log: Callable[[str], None]) -> None:
    """The run's TensorBoard events (``cifar_core.runs.tensorboard``), once its results are
    written. A copy for viewing, not a result: if they cannot be written the run still
    completes, with a warning (``cifar-core tensorboard-export`` can write them later)."""
    try:
        write_tensorboard(writer.path)
    except RunStopped:
        raise
    except Exception as exc:  # any failure here must not fail the run
        log(f"warning: no TensorBoard events for {writer.run_id}: "
            f"{' '.join(str(exc).split()) or type(exc).__name__}")


def run_prefix(config: TrainConfig) -> str:
    return f"m{config.model}-{config.labels}"


def describe_config(config: TrainConfig, dataset: Dataset) -> dict:
    spec = config.spec
    return {
        "model": spec.to_dict(),
        "labels": config.labels,
        "profile": config.profile,
        "hyperparameters": config.to_dict(),
        "seed": config.seed,
        "dataset": dataset.identity(),
        "backbone_weights": weights_identity(config.backbone_weights)
        if spec.net.stem == "mobilenet" else None,
        "environment": environment_info(),
    }


def execute_run(config: TrainConfig, *, data: str | None = None,
                dataset: Dataset | None = None, artifacts: str | None = None,
                writer: RunWriter | None = None, verbose: int = 0,
                log: Callable[[str], None] = print) -> RunWriter:
    """Train and evaluate ``config`` into a run folder; return its writer (``.path``).

    Give ``dataset`` to reuse one already in memory (``--all``), or ``data`` to load one.
    ``writer`` adopts a folder created earlier (a queued job); else a new one is claimed.
    """
    writer = writer or RunWriter.create(artifacts, run_prefix(config), status="running")
    in_main_thread = threading.current_thread() is threading.main_thread()
    _stop_requested.clear()  # before the handler: a SIGTERM from now on is kept
    previous_handler = signal.signal(signal.SIGTERM, _raise_stopped) if in_main_thread else None
    writer.set_status("running")
    writer.start_heartbeat()
    history: list[dict] = []
    try:
        writer.set_progress(phase="loading data")
        writer.flush()
        if dataset is None:
            dataset = load_dataset(data)
        if config.labels == "coarse" and not dataset.has_superclasses:
            raise ConfigError(f"data set {dataset.name} has no superclasses; use --labels fine")
        writer.write_json("config.json", describe_config(config, dataset))
        if config.spec.recipe.hyperparameter_search:
            from cifar_core.search import run_model7_search, search_summary  # keras-tuner

            config = run_model7_search(config, dataset, writer=writer, log=log)
            writer.write_json("config.json", {**describe_config(config, dataset),
                                              "search": search_summary(writer.path)})

        started = time.perf_counter()

        def on_epoch(row: dict, epochs: int) -> None:
            _stop_if_requested()
            history.append(row)
            writer.write_history(history)
            elapsed = time.perf_counter() - started
            eta = elapsed / row["epoch"] * (epochs - row["epoch"])
            steps = (writer.record.get("progress") or {}).get("total") or 1
            writer.report_phase("training", 0, steps, unit="batches", epoch=row["epoch"],
                                epochs=epochs, eta_seconds=round(eta, 1), last=row,
                                write_now=True)
            log(f"epoch {row['epoch']}/{epochs}: loss {row.get('loss', float('nan')):.4f} "
                f"acc {row.get('accuracy', float('nan')):.4f} "
                f"val_loss {row.get('val_loss', float('nan')):.4f} "
                f"val_acc {row.get('val_accuracy', float('nan')):.4f} ({row['seconds']:.1f}s)")

        def on_batch(step: int, steps: int) -> None:
            _stop_if_requested()
            writer.report_phase("training", step, steps, unit="batches",
                                epoch=len(history) + 1, epochs=config.epochs)

        def on_features(done: int, total: int) -> None:  # frozen base: the feature cache
            _stop_if_requested()
            writer.report_phase("features", done, total, unit="images")

        def on_test_batch(done: int, total: int) -> None:
            _stop_if_requested()
            writer.report_phase("evaluating", done, total, unit="batches")

        writer.set_progress(phase="training", epoch=1, epochs=config.epochs)
        result = train(config, dataset, on_epoch=on_epoch, on_batch=on_batch,
                       on_features=on_features, verbose=verbose, log=log)
        writer.set_progress(phase="evaluating")
        writer.flush()
        evaluation = evaluate(result.model, dataset, config.labels, on_batch=on_test_batch)
        metrics = {
            **evaluation.metrics,
            "training": {
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "training_seconds": round(result.training_seconds, 3),
                "images_per_second": round(result.images_per_second, 1),
                "num_train": result.num_train,
                "num_validation": len(result.split.val_idx),
                **result.details,
            },
        }
        writer.set_progress(phase="saving")
        try:
            writer.save_file(MODEL_FILE, lambda p: result.model.save(p))
            writer.save_file(PREDICTIONS_FILE, lambda p: np.savez_compressed(
                p, **evaluation.predictions))
            if evaluation.embedding is not None:
                writer.save_file(EMBEDDING_FILE, lambda p: np.savez_compressed(
                    p, **evaluation.embedding))
            writer.write_history(result.history)
            writer.write_json(METRICS_FILE, metrics)  # the results file, written last
        except OSError as exc:
            raise RunFolderError(f"could not write the results into {writer.path}: "
                                 f"{exc.strerror or exc}") from None
        _write_tensorboard(writer, log)
        writer.set_progress(phase="done")
        writer.set_status("completed")
        return writer
    except RunStopped:
        raise _record_stop(writer, len(history)) from None  # one plain line, no traceback
    except KeyboardInterrupt:
        _record_stop(writer, len(history))
        raise
    except Exception as exc:
        if _stop_requested.is_set():  # the stop's exception, wrapped by library code
            log(f"(the stop ended the run with {type(exc).__name__}: {exc})")
            raise _record_stop(writer, len(history)) from exc
        else:
            _record_end(writer, "failed", str(exc) if isinstance(exc, CifarCoreError)
                        else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        writer.stop_heartbeat()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
