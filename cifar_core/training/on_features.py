"""Training on cached features: ``train_on_features``, what ``train()`` runs for a spec whose
frozen part can be cached (``uses_frozen_features``), on ``fit_on_features`` (Keras ``fit``).

Each epoch draws one flip variant per image (``FlipSampler``: seeded, the same draws for the
same seed) from the cached features (``CachedSource``) or, with ``TrainConfig.feature_cache``
off, from the flipped images run through the whole frozen network (``ImageSource``), as a
``keras.utils.PyDataset`` (``FlipBatches``), and ``fit`` drives the callbacks of ``train()``
(history rows, progress, early stopping restoring the best weights). (Model 7's search trials
keep their own loop for small heads: ``cifar_core.search.head_loop``.) Model 8's recipe is
applied here: the head warm-up, the cosine schedule, the moving average of the weights,
test-time flips. The layers trained are the full model's own, so the result is the end-to-end
model (raw 32x32 images in, the layer names of ``build_model``) and is saved like any other
run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np

from cifar_core.data.dataset import Dataset, Split
from cifar_core.features import (
    FLIP_VARIANTS,
    CachedSource,
    FlipBatches,
    ImageSource,
    base_layer,
    cut_layer,
    feature_extractor,
    flip_variants,
    head_model,
    load_or_build_features,
    trunk_model,
)
from cifar_core.models.builder import (
    build_model,
    freeze_through,
    keep_batch_norm_in_inference_mode,
    make_optimizer,
    with_test_time_flips,
)
from cifar_core.models.specs import ModelSpec
from cifar_core.training.config import HEAD_LEARNING_RATE
from cifar_core.training.objective import objective, recipe_optimizer
from cifar_core.training.result import EpochRecorder, TrainResult

STEPS_PER_CALL = 32  # optimizer steps per graph call when training on features
EVAL_BATCH = 1000  # validation batches (no optimizer step: only the per-call cost matters)


def fit_on_features(step_model: keras.Model, *, source, train_rows: np.ndarray,
                    y_train: np.ndarray, val_rows: np.ndarray | None,
                    y_val: np.ndarray | None, epochs: int, batch_size: int,
                    optimizer: keras.optimizers.Optimizer, seed: int,
                    callbacks: list | None = None, verbose: int = 0,
                    steps_per_call: int = STEPS_PER_CALL, validate_each_epoch: bool = True,
                    num_variants: int = len(FLIP_VARIANTS), max_shift: int = 0,
                    cutout: int = 0, label_smoothing: float = 0.0) -> None:
    """Train ``step_model`` on ``source`` with Keras ``fit``, one seeded flip variant per image
    per epoch (``FlipBatches``, a ``keras.utils.PyDataset``).

    Sparse categorical cross-entropy (label-smoothed by the loss where asked), one optimizer
    step per batch of ``batch_size``, epoch logs ``loss``/``accuracy`` and
    ``val_loss``/``val_accuracy`` on the unflipped validation inputs, and the callbacks of
    ``train()`` (early stopping with best-weight restore, the epoch recorder). The draws come
    from ``FlipSampler``, so the cached and the on-the-fly sources see the same batches.
    ``steps_per_call`` optimizer steps run in one graph call (``steps_per_execution``): small
    heads are bound by per-call overhead, not arithmetic. ``validate_each_epoch=False``
    validates after the last epoch only. With ``max_shift`` each training input is translated
    by a seeded shift of up to that many cells, with ``cutout`` a seeded window of that many
    cells a side is zeroed. The logged ``val_loss`` is always against the plain labels
    (comparable across recipes): ``cifar_core.training.objective``.

    It replaced a hand-written loop for model 8: measured side by side
    (``benchmarks/features_loop.py --mode model8``, BENCHMARKS.md "One training loop"), ``fit``
    trains model 8's blocks as fast. Model 7's search heads keep that loop, where ``fit`` is a
    third slower (``cifar_core.search.head_loop``).
    """
    batches = FlipBatches(source, train_rows, y_train, batch_size=batch_size, seed=seed,
                          num_variants=num_variants, max_shift=max_shift, cutout=cutout)
    loss, metrics, objective_callbacks = objective(label_smoothing, step_model.output_shape[-1])
    callbacks = objective_callbacks + list(callbacks or [])
    step_model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                       steps_per_execution=max(1, steps_per_call), jit_compile=False)
    has_val = val_rows is not None and len(val_rows) > 0
    # shuffle=False: the draw is the order (fit would shuffle the batches, unseeded)
    step_model.fit(batches, epochs=epochs, shuffle=False,
                   validation_data=(source.plain(val_rows), y_val) if has_val else None,
                   validation_batch_size=max(batch_size, EVAL_BATCH),
                   validation_freq=1 if validate_each_epoch else epochs,
                   callbacks=callbacks, verbose=verbose)


def validate(step_model: keras.Model, inputs: np.ndarray, labels: np.ndarray,
             batch_size: int) -> dict:
    """``val_loss`` (plain cross-entropy) and ``val_accuracy`` of a model ``fit_on_features``
    compiled, on ``inputs``."""
    scores = step_model.evaluate(inputs, labels, batch_size=max(batch_size, EVAL_BATCH),
                                 verbose=0, return_dict=True)
    return {"val_loss": float(scores.get("cross_entropy", scores["loss"])),
            "val_accuracy": float(scores["accuracy"])}


def train_on_features(config, dataset: Dataset, split: Split, *, num_outputs: int,
                      y_all: np.ndarray, on_epoch=None, on_batch=None,
                      on_features: Callable[[int, int], None] | None = None,
                      verbose: int = 0, log: Callable[[str], None] | None = None):
    """``train()`` for a spec whose frozen part can be cached (``uses_frozen_features``): a
    frozen base (the head trains on its features), or a base frozen through a layer (the
    upper base and the head train on that layer's maps, model 8).

    The caller has seeded everything; the model is built here exactly as ``train()`` builds
    it, so the initial weights are the same. The spec's extras apply in order: a head warm-up
    (the base frozen, Adam 1e-3), then training with the configured optimizer, its learning
    rate constant or decayed to zero along a cosine over ``config.epochs``; with early
    stopping the best weights come back, without it the moving average of the weights
    replaces the last ones where the spec keeps one (``weight_ema``). Returns ``train()``'s
    ``TrainResult``, whose model is the full end-to-end network, wrapped to average each
    image with its mirror image when the spec asks for test-time flips.
    """
    spec = config.spec
    cut = cut_layer(spec)
    num_variants = len(flip_variants(spec))
    # shifts and cutout are for the maps at a cut only (a whole frozen base has none)
    max_shift, cutout = (spec.aug.feature_shift, spec.aug.feature_cutout) if cut else (0, 0)
    model = build_model(spec, num_outputs, backbone_weights=config.backbone_weights,
                        seed=config.seed)
    steps = int(np.ceil(len(split.train_idx) / config.batch_size))
    model.compile(optimizer=recipe_optimizer(spec.recipe, optimizer=config.optimizer,
                                             learning_rate=config.learning_rate,
                                             epochs=config.epochs, steps_per_epoch=steps,
                                             patience=config.patience),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weight_ema = model.optimizer.ema_momentum if model.optimizer.use_ema else 0.0
    details: dict = {"feature_cache": None}
    if spec.net.fold_batch_norm:  # the machine chose it: read back what the blocks were built in
        details["finetune_precision"] = base_layer(model).layers[-1].dtype_policy.name
    if config.feature_cache:
        cache = load_or_build_features(feature_extractor(model, cut), spec, dataset,
                                       weights=config.backbone_weights,
                                       on_progress=on_features, log=log)
        source, step_model = CachedSource(cache), head_model(model, cut)
        details["feature_cache"] = {"path": str(cache.path), "reused": not cache.built,
                                    "seconds": round(cache.seconds, 3)}
    else:
        pixels_per_cell = 1
        if max_shift:  # one cell of the cut's map, in pixels of the stored images
            map_size = base_layer(model).get_layer(cut).output.shape[1]
            pixels_per_cell = dataset.x_train.shape[1] / map_size
        source = ImageSource(dataset.x_train, pixels_per_cell)
        step_model = trunk_model(model)
    data = {"source": source, "train_rows": split.train_idx, "y_train": y_all[split.train_idx],
            "val_rows": split.val_idx, "y_val": y_all[split.val_idx], "seed": config.seed,
            "batch_size": config.batch_size, "num_variants": num_variants, "verbose": verbose,
            "max_shift": max_shift, "label_smoothing": spec.recipe.label_smoothing,
            "cutout": cutout}

    start = time.perf_counter()
    if spec.recipe.head_warmup_epochs and not spec.net.freeze_backbone:
        say = log or (lambda _line: None)
        say(f"head warm-up: {spec.recipe.head_warmup_epochs} epoch(s), the base frozen")
        details["head_warmup"] = warm = _warm_up_head(model, step_model, spec, data)
        val = warm.get("val_accuracy")
        say(f"head warm-up done in {warm['seconds']:.0f} s"
            + (f", val_acc {val:.4f}" if val is not None else "")
            + f"; now fine-tuning the base above {cut}")
    recorder = EpochRecorder(config.epochs, steps, on_epoch=on_epoch, on_batch=on_batch)
    callbacks = [recorder]
    if config.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True))
    fit_on_features(step_model, epochs=config.epochs, optimizer=model.optimizer,
                    callbacks=callbacks, **data)
    rows = recorder.rows
    if weight_ema:
        details["weight_ema"] = ema = _validate_weight_average(model.optimizer, step_model,
                                                               data, rows[-1] if rows else {})
        if log and ema.get("val_accuracy") is not None:
            log(f"weights averaged (EMA, momentum {weight_ema}): val_acc "
                f"{ema['last_weights_val_accuracy']:.4f} with the last weights, "
                f"{ema['val_accuracy']:.4f} with their average")
    seconds = time.perf_counter() - start
    val_losses = [r.get("val_loss", np.inf) for r in rows]
    if spec.recipe.test_time_flips:
        model = with_test_time_flips(model)
    return TrainResult(model=model, history=rows, epochs_run=len(rows),
                       best_epoch=int(np.argmin(val_losses)) + 1 if rows else 0,
                       training_seconds=seconds, num_train=len(split.train_idx), split=split,
                       details=details)


def _warm_up_head(model: keras.Model, step_model: keras.Model, spec: ModelSpec,
                  data: dict) -> dict:
    """Train the new head alone for ``spec.recipe.head_warmup_epochs`` (the base frozen, Adam at
    the head's 1e-3), a first phase of the same loop, so that fine-tuning starts from a
    sensible head instead of sending random gradients into the pretrained layers; then make
    the base trainable above its cut again."""
    base = base_layer(model)
    base.trainable = False
    recorder = EpochRecorder(spec.recipe.head_warmup_epochs, 0)
    start = time.perf_counter()
    fit_on_features(step_model, epochs=spec.recipe.head_warmup_epochs,
                    optimizer=make_optimizer("adam", HEAD_LEARNING_RATE), callbacks=[recorder],
                    **data)
    base.trainable = True  # re-freezes below: setting it resets every sublayer
    if spec.net.frozen_through:
        freeze_through(base, spec.net.frozen_through)
    keep_batch_norm_in_inference_mode(base)
    last = recorder.rows[-1] if recorder.rows else {}
    return {"epochs": len(recorder.rows), "seconds": round(time.perf_counter() - start, 3),
            "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss")}


def _validate_weight_average(optimizer: keras.optimizers.Optimizer, step_model: keras.Model,
                             data: dict, last_epoch: dict) -> dict:
    """Validate the moving average of the weights that ``fit`` left in ``step_model``.

    Keras' ``fit`` ends by giving the model an EMA optimizer's averaged weights
    (``finalize_variable_values``). The epoch logs were validated on each epoch's last
    weights; the validation of the average is recorded beside the last epoch's, so every run
    shows what averaging changed.
    """
    summary = {"momentum": optimizer.ema_momentum,
               "last_weights_val_accuracy": last_epoch.get("val_accuracy"),
               "last_weights_val_loss": last_epoch.get("val_loss")}
    val_rows = data["val_rows"]
    if val_rows is not None and len(val_rows):
        summary.update(validate(step_model, data["source"].plain(val_rows), data["y_val"],
                                data["batch_size"]))
    return summary
