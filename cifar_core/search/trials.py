"""Running one trial: k-fold stratified cross-validation of one set of hyperparameter values.

This is the only part of the search that trains; ``cifar_core.search.tuners`` and
``cifar_core.search.run`` decide which values to try and never train themselves.

Two ways to run a fold, the two search modes:

- ``CachedTrialRunner`` (``cached``): the head alone, on cached features of the frozen base
  (``cifar_core.training.on_features``: one flip variant drawn per image per epoch). Seconds
  per fold.
- ``FullTrialRunner`` (``full``): the whole network fine-tuned end to end from the pretrained
  base, exactly as the final model 6/7 is trained and as the report's search did. Minutes to
  hours per fold on a CPU.

Both score a fold by its validation accuracy: at the last epoch in stage 1 (fixed epochs, no
early stopping), at the epoch early stopping keeps (lowest validation loss) in stage 2.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.model_selection import StratifiedKFold

from cifar_core.data.dataset import Dataset, stratified_split
from cifar_core.errors import ConfigError
from cifar_core.features import CachedSource, feature_extractor, load_or_build_features
from cifar_core.models.builder import (
    build_head,
    build_model,
    compile_model,
    distribution_scope,
    make_optimizer,
)
from cifar_core.models.precision import fast_precision
from cifar_core.search.head_loop import fit_head
from cifar_core.search.space import apply_values
from cifar_core.settings import ENV_HEAD_PRECISION
from cifar_core.training.seeding import set_global_seed
from cifar_core.training.train import EpochRecorder, labels_for


@dataclass(frozen=True)
class StageSettings:
    """How a trial of one stage trains each fold."""

    stage: int
    epochs: int
    batch_size: int
    patience: int  # early stopping on val_loss; 0: none (stage 1 always)
    folds: int | None = None  # score on the first N folds (None: all)

    @property
    def validate_each_epoch(self) -> bool:
        """Without early stopping only the last epoch's validation counts."""
        return self.patience > 0


def stage_settings(config, stage: int) -> StageSettings:
    if stage == 1:
        return StageSettings(1, config.search_epochs, config.search_batch_size, 0)
    return StageSettings(2, config.grid_epochs, config.grid_batch_size, config.patience,
                         config.grid_folds)


@dataclass
class FoldResult:
    score: float  # validation accuracy of the weights the fold keeps
    val_loss: float
    epochs: int
    seconds: float
    epoch_seconds: list[float]


@dataclass
class TrialResult:
    folds: list[FoldResult]

    @property
    def mean(self) -> float:
        return float(np.mean([f.score for f in self.folds]))

    @property
    def seconds(self) -> float:
        return float(sum(f.seconds for f in self.folds))

    def metrics(self) -> dict:
        """What the tuner reports to the oracle (numbers only: they travel over gRPC)."""
        out = {"val_accuracy": self.mean, "seconds": round(self.seconds, 3),
               "epochs": float(np.mean([f.epochs for f in self.folds]))}
        for i, fold in enumerate(self.folds, start=1):
            out[f"fold_{i}_val_accuracy"] = fold.score
        return out


def fold_score(rows: list[dict], early_stopping: bool) -> tuple[float, float]:
    """(val_accuracy, val_loss) of the weights a fold ends with."""
    if not rows:
        return float("nan"), float("nan")
    # With early stopping the best weights are restored: the epoch of the lowest val_loss.
    row = min(rows, key=lambda r: r.get("val_loss", np.inf)) if early_stopping else rows[-1]
    return float(row["val_accuracy"]), float(row["val_loss"])


class TrialRunner:
    """Cross-validates hyperparameter values on the training split (the validation 20% and
    the test set are never touched): stratified, seeded folds, the same for every trial."""

    mode = "abstract"

    def __init__(self, config, dataset: Dataset, *, log: Callable[[str], None] = print):
        self.config, self.dataset, self.log = config, dataset, log
        split = stratified_split(dataset.y_train, seed=config.seed,
                                 validation_fraction=config.validation_fraction)
        labels = labels_for(dataset, config.labels)
        self.rows = split.train_idx  # indices into dataset.x_train
        self.labels = labels[self.rows]
        self.all_labels = labels
        self.num_outputs = (dataset.num_classes if config.labels == "fine"
                            else len(dataset.superclass_names))
        self.folds = make_folds(self.labels, config.search_folds, config.seed)

    def run(self, values: dict, stage: int,
            on_fold: Callable[[int, FoldResult], None] | None = None) -> TrialResult:
        settings = stage_settings(self.config, stage)
        trial_config = apply_values(self.config, values)
        results = []
        for index, (train_pos, val_pos) in enumerate(self.folds[:settings.folds]):
            largest = len(train_pos)
            if settings.batch_size > largest:
                raise ConfigError(f"batch size {settings.batch_size} of stage {stage} is larger "
                                  f"than the {largest} training images of a fold")
            set_global_seed(self.config.seed)  # same start for every trial, on any worker
            start = time.perf_counter()
            rows = self.run_fold(trial_config, settings, self.rows[train_pos],
                                 self.rows[val_pos], fold_seed(self.config.seed, index))
            score, val_loss = fold_score(rows, settings.patience > 0)
            result = FoldResult(score=score, val_loss=val_loss, epochs=len(rows),
                                seconds=time.perf_counter() - start,
                                epoch_seconds=[r["seconds"] for r in rows])
            results.append(result)
            if on_fold:
                on_fold(index, result)
            gc.collect()
        return TrialResult(results)

    def run_fold(self, trial_config, settings: StageSettings, train_rows: np.ndarray,
                 val_rows: np.ndarray, seed: int) -> list[dict]:
        raise NotImplementedError

    def _callbacks(self, settings: StageSettings, steps: int) -> tuple[EpochRecorder, list]:
        recorder = EpochRecorder(settings.epochs, steps)
        callbacks = [recorder]
        if settings.patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=settings.patience, restore_best_weights=True))
        return recorder, callbacks


def head_precision() -> str:
    """The precision of the cached trials' hidden layers (``cifar_core.models.precision``):
    ``mixed_bfloat16`` on a CPU with native bfloat16 matrix units and no GPU, else
    ``float32``; ``CIFAR_CORE_HEAD_PRECISION`` overrides it.

    The trials are dense layers on cached features, bound by matrix products: on the 2-core
    Xeon of BENCHMARKS.md bfloat16 trains them about twice as fast (1024-512-256 heads:
    14.0k against 6.9k samples/s). Weights, optimizer and softmax stay float32; the trials'
    scores move by noise-level amounts, and the final model is trained in float32.
    """
    return fast_precision(ENV_HEAD_PRECISION)


def fold_seed(seed: int, fold: int) -> int:
    return (int(seed) * 1_000_003 + 7_919 * (fold + 1)) % 2**32


def make_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold positions into ``labels``; a clear error when a class is too small."""
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if present.min() < folds:
        smallest = int(np.flatnonzero(counts == present.min())[0])
        raise ConfigError(f"--folds {folds}: class {smallest} has only {present.min()} images "
                          f"in the training split; use at most {present.min()} folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


class CachedTrialRunner(TrialRunner):
    """Trials train the head on cached features of the frozen, pretrained base."""

    mode = "cached"

    def __init__(self, config, dataset: Dataset, *, log: Callable[[str], None] = print,
                 on_features: Callable[[int, int], None] | None = None):
        super().__init__(config, dataset, log=log)
        spec = config.spec.changed(net={"freeze_backbone": True})
        set_global_seed(config.seed)
        model = build_model(spec, self.num_outputs, backbone_weights=config.backbone_weights,
                            seed=config.seed)
        self.cache = load_or_build_features(feature_extractor(model), spec, dataset,
                                            weights=config.backbone_weights,
                                            on_progress=on_features, log=log)
        self.source = CachedSource(self.cache)
        del model

    def run_fold(self, trial_config, settings, train_rows, val_rows, seed):
        spec = trial_config.spec
        head = build_head(spec, self.num_outputs, self.cache.feature_shape,
                          seed=trial_config.seed, dtype=head_precision())
        optimizer = make_optimizer(trial_config.optimizer, trial_config.learning_rate)
        steps = int(np.ceil(len(train_rows) / settings.batch_size))
        recorder, callbacks = self._callbacks(settings, steps)
        fit_head(head, source=self.source, train_rows=train_rows,
                 y_train=self.all_labels[train_rows], val_rows=val_rows,
                 y_val=self.all_labels[val_rows], epochs=settings.epochs,
                 batch_size=settings.batch_size, optimizer=optimizer, seed=seed,
                 callbacks=callbacks, validate_each_epoch=settings.validate_each_epoch)
        return recorder.rows


class FullTrialRunner(TrialRunner):
    """Trials fine-tune the whole network (augmentation, pretrained base, head) per fold."""

    mode = "full"
    last_model = None

    def run_fold(self, trial_config, settings, train_rows, val_rows, seed):
        x = self.dataset.x_train
        with distribution_scope():
            model = build_model(trial_config.spec, self.num_outputs,
                                backbone_weights=trial_config.backbone_weights,
                                seed=trial_config.seed)
            compile_model(model, optimizer=trial_config.optimizer,
                          learning_rate=trial_config.learning_rate)
        steps = int(np.ceil(len(train_rows) / settings.batch_size))
        recorder, callbacks = self._callbacks(settings, steps)
        model.fit(x[train_rows], self.all_labels[train_rows],
                  validation_data=(x[val_rows], self.all_labels[val_rows]),
                  epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True,
                  callbacks=callbacks, verbose=0,
                  validation_freq=1 if settings.validate_each_epoch else settings.epochs)
        self.last_model = model  # the fold's trained network (benchmarks, tests); one kept
        return recorder.rows


def make_runner(config, dataset: Dataset, *, log: Callable[[str], None] = print,
                on_features: Callable[[int, int], None] | None = None) -> TrialRunner:
    if config.search_mode == "cached":
        return CachedTrialRunner(config, dataset, log=log, on_features=on_features)
    if config.search_mode == "full":
        return FullTrialRunner(config, dataset, log=log)
    raise ConfigError(f"search mode {config.search_mode!r} is not resolved (cached or full)")
