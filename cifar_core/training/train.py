"""``train()``: the one training loop for every model (Keras ``fit`` with the report's protocol)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import keras
import numpy as np

from cifar_core.data.dataset import Dataset, stratified_split
from cifar_core.features import uses_frozen_features
from cifar_core.models.builder import build_model, distribution_scope
from cifar_core.training.config import TrainConfig
from cifar_core.training.objective import objective, recipe_optimizer
from cifar_core.training.on_features import train_on_features
from cifar_core.training.result import EpochRecorder, TrainResult
from cifar_core.training.seeding import set_global_seed


def labels_for(dataset: Dataset, label_set: str, which: str = "train") -> np.ndarray:
    """Fine labels, or superclass labels for ``label_set == "coarse"``."""
    fine = dataset.y_train if which == "train" else dataset.y_test
    if label_set == "fine":
        return fine
    if not dataset.has_superclasses:
        raise ValueError(f"data set {dataset.name} has no superclasses; use --labels fine")
    return dataset.fine_to_coarse[fine]


def output_class_names(dataset: Dataset, label_set: str) -> list[str]:
    return dataset.class_names if label_set == "fine" else list(dataset.superclass_names or [])


def train(config: TrainConfig, dataset: Dataset, *,
          on_epoch: Callable[[dict, int], None] | None = None,
          on_batch: Callable[[int, int], None] | None = None,
          on_features: Callable[[int, int], None] | None = None,
          verbose: int = 0, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``config.model`` on the training split, validating on the held-out 20%.

    The report's protocol: Adam, sparse categorical cross-entropy, early stopping on
    validation loss (patience ``config.patience``) restoring the best weights, one seed.
    A spec whose frozen part can be cached (a frozen MobileNet base, or model 8's base frozen
    through a layer) trains the rest on cached features (``cifar_core.training.on_features``;
    ``on_features`` reports their computation, ``log`` its phases) and returns the same
    end-to-end model. Both paths run Keras ``fit`` with the recipe's optimizer, schedule,
    weight averaging and loss (``cifar_core.training.objective``).
    """
    split = stratified_split(dataset.y_train, seed=config.seed,
                             validation_fraction=config.validation_fraction)
    config.check_fits(len(split.train_idx))
    set_global_seed(config.seed)
    y_all = labels_for(dataset, config.labels)
    x_train, y_train = dataset.x_train[split.train_idx], y_all[split.train_idx]
    x_val, y_val = dataset.x_train[split.val_idx], y_all[split.val_idx]
    num_outputs = dataset.num_classes if config.labels == "fine" else len(
        dataset.superclass_names)

    if uses_frozen_features(config.spec):
        return train_on_features(config, dataset, split, num_outputs=num_outputs, y_all=y_all,
                                 on_epoch=on_epoch, on_batch=on_batch, on_features=on_features,
                                 verbose=verbose, log=log)

    warm = None
    if config.warm_start:
        # Phase 1: the head alone, on cached frozen-base features (seconds per epoch).
        head_phase = replace(config, freeze_base=True, warm_start=False,
                             learning_rate=config.head_learning_rate or config.learning_rate)
        warm = train_on_features(head_phase, dataset,
                                 split, num_outputs=num_outputs, y_all=y_all,
                                 on_batch=on_batch, on_features=on_features, verbose=verbose)
        set_global_seed(config.seed)
    with distribution_scope():  # several GPUs: MirroredStrategy; otherwise a no-op
        model = build_model(config.spec, num_outputs,
                            backbone_weights=config.backbone_weights, seed=config.seed)
        if warm is not None:
            copy_head(warm.model, model)
        steps = int(np.ceil(len(x_train) / config.batch_size))
        loss, metrics, callbacks = objective(config.spec.recipe.label_smoothing, num_outputs)
        model.compile(optimizer=recipe_optimizer(config.spec.recipe, optimizer=config.optimizer,
                                                 learning_rate=config.learning_rate,
                                                 epochs=config.epochs, steps_per_epoch=steps,
                                                 patience=config.patience),
                      loss=loss, metrics=metrics)

    recorder = EpochRecorder(config.epochs, steps, on_epoch=on_epoch, on_batch=on_batch)
    callbacks.append(recorder)
    early = None
    if config.patience > 0:
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                              restore_best_weights=True)
        callbacks.append(early)
    start = time.perf_counter()
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=config.epochs,
              batch_size=config.batch_size, shuffle=True, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    rows = recorder.rows
    val_losses = [r.get("val_loss", np.inf) for r in rows]
    best_epoch = int(np.argmin(val_losses)) + 1 if rows else 0
    details = {}
    if warm is not None:
        details["warm_start"] = {
            "epochs_run": warm.epochs_run, "best_epoch": warm.best_epoch,
            "seconds": round(warm.training_seconds, 3),
            "val_accuracy": max((r.get("val_accuracy", 0.0) for r in warm.history),
                                default=None),
            "feature_cache": warm.details.get("feature_cache")}
        seconds += warm.training_seconds  # the run's training time covers both phases
    return TrainResult(model=model, history=rows, epochs_run=len(rows), best_epoch=best_epoch,
                       training_seconds=seconds, num_train=len(x_train), split=split,
                       details=details)


def copy_head(source: keras.Model, target: keras.Model) -> None:
    """Give ``target`` the trained head of ``source`` (same spec: layers match by name)."""
    base_names = {layer.name for layer in target.layers if isinstance(layer, keras.Model)}
    for layer in target.layers:
        if layer.weights and layer.name not in base_names and not isinstance(
                layer, keras.Model):
            layer.set_weights(source.get_layer(layer.name).get_weights())
