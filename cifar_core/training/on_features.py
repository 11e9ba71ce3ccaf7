"""Training on cached features: ``train_on_features``, what ``train()`` runs for a spec whose
frozen part can be cached (``uses_frozen_features``), and its hand-written loop
``fit_on_flips``.

The loop draws one flip variant per image per epoch (``FlipSampler``: seeded, the same draws
for the same seed) from the cached features (``CachedSource``) or, with
``TrainConfig.feature_cache`` off, from the flipped images run through the whole frozen network
(``ImageSource``), and drives the callbacks of ``train()`` (history rows, progress, early
stopping restoring the best weights). Model 8's recipe is applied here: the head warm-up, the
cosine schedule, the moving average of the weights, test-time flips. The layers trained are
the full model's own, so the result is the end-to-end model (raw 32x32 images in, the layer
names of ``build_model``) and is saved like any other run's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import keras
import numpy as np
import tensorflow as tf

from cifar_core.data.dataset import Dataset, Split
from cifar_core.errors import ConfigError
from cifar_core.features import (
    FLIP_VARIANTS,
    CachedSource,
    FlipSampler,
    ImageSource,
    base_layer,
    cut_layer,
    feature_extractor,
    flip_variants,
    head_model,
    load_or_build_features,
    trunk_model,
)
from cifar_core.features.cache import ExpectedRetracing
from cifar_core.models.builder import (
    build_model,
    freeze_through,
    keep_batch_norm_in_inference_mode,
    make_optimizer,
    with_test_time_flips,
)
from cifar_core.models.specs import ModelSpec
from cifar_core.training.config import HEAD_LEARNING_RATE
from cifar_core.training.result import EpochRecorder, TrainResult

STEPS_PER_CALL = 32  # optimizer steps per graph call when training on features
EVAL_BATCH = 1000  # validation batches (no optimizer step: only the per-call cost matters)

tf.get_logger().addFilter(ExpectedRetracing("fit_on_flips"))


def fit_on_flips(step_model: keras.Model, *, source, train_rows: np.ndarray,
                 y_train: np.ndarray, val_rows: np.ndarray | None, y_val: np.ndarray | None,
                 epochs: int, batch_size: int, optimizer: keras.optimizers.Optimizer,
                 seed: int, callbacks: list | None = None,
                 callback_model: keras.Model | None = None, verbose: int = 0,
                 steps_per_call: int = STEPS_PER_CALL,
                 validate_each_epoch: bool = True,
                 num_variants: int = len(FLIP_VARIANTS), max_shift: int = 0,
                 cutout: int = 0, label_smoothing: float = 0.0) -> None:
    """Train ``step_model`` on ``source`` with one seeded flip variant per image per epoch.

    The loop does what ``Model.fit`` does for ``train()``: sparse categorical cross-entropy,
    one optimizer step per batch of ``batch_size``, epoch logs ``loss``/``accuracy`` (means
    over samples) and ``val_loss``/``val_accuracy`` on the unflipped validation images, and the
    Keras callbacks (``EarlyStopping`` with best-weight restore, the epoch recorder) driven
    with those logs. The draws come from ``FlipSampler``, so the cached and the on-the-fly
    sources see exactly the same batches. ``steps_per_call`` optimizer steps run inside one
    graph call (what ``steps_per_execution`` does in Keras): small heads are bound by
    per-call overhead, not arithmetic. ``validate_each_epoch=False`` validates after the
    last epoch only (nothing else needs it without early stopping). ``num_variants`` is how
    many flip variants the draws choose from (the first of ``FLIP_VARIANTS``); with
    ``max_shift`` each training input is also translated by a seeded random shift of up to
    that many cells (``translate``), and with ``cutout`` a seeded window of that many cells
    a side is set to zero (``cut_out``). ``label_smoothing`` softens the training targets; the
    validation loss is always against the plain labels, comparable across recipes.
    """
    callback_model = callback_model or step_model
    variables = step_model.trainable_variables
    optimizer.build(variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    train_loss_fn = _smoothed_loss(label_smoothing, step_model.output_shape[-1]) \
        if label_smoothing else loss_fn

    @tf.function(reduce_retracing=True)
    def train_steps(x, y):
        steps = (tf.shape(x)[0] + batch_size - 1) // batch_size
        loss_sum, correct = tf.constant(0.0), tf.constant(0)
        for i in tf.range(steps):
            xb = tf.cast(x[i * batch_size:(i + 1) * batch_size], tf.float32)
            yb = y[i * batch_size:(i + 1) * batch_size]
            with tf.GradientTape() as tape:
                probs = step_model(xb, training=True)
                loss = train_loss_fn(yb, probs)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            loss_sum += loss * tf.cast(tf.shape(xb)[0], tf.float32)
            correct += _correct(probs, yb)
        return loss_sum, correct

    eval_step = _eval_step(step_model)
    sampler = FlipSampler(len(train_rows), seed, num_variants)
    steps = int(np.ceil(len(train_rows) / batch_size))
    per_call = batch_size * max(1, steps_per_call)
    val_inputs = source.plain(val_rows) if val_rows is not None and len(val_rows) else None
    callback_list = keras.callbacks.CallbackList(
        callbacks or [], add_progbar=verbose > 0, model=callback_model, verbose=verbose,
        epochs=epochs, steps=steps)
    callback_model.stop_training = False
    callback_list.on_train_begin()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="next-inputs") as pool:
        for epoch in range(epochs):
            callback_list.on_epoch_begin(epoch)
            order, variants = sampler.epoch(epoch)
            shifts = sampler.shifts(epoch, max_shift) if max_shift > 0 else None
            centers = sampler.cutout_centers(epoch) if cutout > 0 else None
            chunks = [slice(begin, begin + per_call) for begin in range(0, len(order), per_call)]
            loss_sum, correct_sum = 0.0, 0
            make = partial(_chunk_inputs, source, train_rows[order], variants, shifts,
                           centers, cutout)
            for chunk, x in _prefetched(pool, chunks, make):
                loss, correct = train_steps(tf.constant(x), tf.constant(y_train[order[chunk]]))
                loss_sum += float(loss)
                correct_sum += int(correct)
                done = min(len(order), chunk.stop)
                callback_list.on_train_batch_end(min(steps, chunk.stop // batch_size) - 1,
                                                 {"loss": loss_sum / done})
            logs = {"loss": loss_sum / len(train_rows), "accuracy": correct_sum / len(train_rows)}
            if val_inputs is not None and (validate_each_epoch or epoch == epochs - 1):
                logs.update(_evaluate(eval_step, val_inputs, y_val, max(batch_size, EVAL_BATCH)))
            callback_list.on_epoch_end(epoch, logs)
            if callback_model.stop_training:
                break
    callback_list.on_train_end()


def _chunk_inputs(source, rows: np.ndarray, variants: np.ndarray, shifts: np.ndarray | None,
                  centers: np.ndarray | None, cutout: int, chunk: slice) -> np.ndarray:
    """The training inputs of positions ``chunk`` of an epoch's draw."""
    return source.batch(rows[chunk], variants[chunk], None if shifts is None else shifts[chunk],
                        None if centers is None else (centers[chunk], cutout))


def _prefetched(pool: ThreadPoolExecutor, chunks: list, make: Callable):
    """``(chunk, make(chunk))`` for each chunk in order, each next one made in ``pool`` while
    the caller works on the current one: the NumPy gathering and shifting of training inputs
    overlaps the graph's training step (both release the GIL for the bulk of their work)."""
    upcoming = pool.submit(make, chunks[0]) if chunks else None
    for i, chunk in enumerate(chunks):
        current = upcoming.result()
        if i + 1 < len(chunks):
            upcoming = pool.submit(make, chunks[i + 1])
        yield chunk, current


def _smoothed_loss(label_smoothing: float, num_classes: int):
    """Cross-entropy of integer labels against label-smoothed one-hot targets."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def loss(y, probs):
        return smoothed(tf.one_hot(tf.cast(y, tf.int32), num_classes), probs)

    return loss


def _correct(probs, y):
    predicted = tf.argmax(probs, axis=1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(y, tf.int32)), tf.int32))


def _eval_step(step_model: keras.Model):
    """A graph function: (loss, correct count) of ``step_model`` on one batch."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function(reduce_retracing=True)
    def eval_step(x, y):
        probs = step_model(tf.cast(x, tf.float32), training=False)
        return loss_fn(y, probs), _correct(probs, y)

    return eval_step


def _evaluate(eval_step, inputs: np.ndarray, labels: np.ndarray, batch_size: int) -> dict:
    loss_sum, correct_sum = 0.0, 0
    for begin in range(0, len(inputs), batch_size):
        x, y = inputs[begin:begin + batch_size], labels[begin:begin + batch_size]
        loss, correct = eval_step(tf.constant(x), tf.constant(y))
        loss_sum += float(loss) * len(x)
        correct_sum += int(correct)
    return {"val_loss": loss_sum / len(inputs), "val_accuracy": correct_sum / len(inputs)}


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
    spec = config.spec()
    cut = cut_layer(spec)
    num_variants = len(flip_variants(spec))
    # shifts and cutout are for the maps at a cut only (a whole frozen base has none)
    max_shift, cutout = (spec.feature_shift, spec.feature_cutout) if cut else (0, 0)
    model = build_model(spec, num_outputs, backbone_weights=config.backbone_weights,
                        seed=config.seed)
    steps = int(np.ceil(len(split.train_idx) / config.batch_size))
    learning_rate = config.learning_rate
    if spec.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps)
    # Early stopping restores its best epoch's weights: then no average is kept or used.
    weight_ema = spec.weight_ema if config.patience == 0 else 0.0
    model.compile(optimizer=make_optimizer(config.optimizer, learning_rate, weight_ema),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    details: dict = {"feature_cache": None}
    if spec.fold_batch_norm:  # the machine chose it: read back what the blocks were built in
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
            "max_shift": max_shift, "label_smoothing": spec.label_smoothing,
            "cutout": cutout}

    start = time.perf_counter()
    if spec.head_warmup_epochs and not spec.freeze_backbone:
        say = log or (lambda _line: None)
        say(f"head warm-up: {spec.head_warmup_epochs} epoch(s), the base frozen")
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
    fit_on_flips(step_model, epochs=config.epochs, optimizer=model.optimizer,
                 callbacks=callbacks, callback_model=model, **data)
    rows = recorder.rows
    if weight_ema:
        details["weight_ema"] = ema = _use_weight_average(model.optimizer, step_model, data,
                                                          rows[-1] if rows else {})
        if log and ema.get("val_accuracy") is not None:
            log(f"weights averaged (EMA, momentum {weight_ema}): val_acc "
                f"{ema['last_weights_val_accuracy']:.4f} with the last weights, "
                f"{ema['val_accuracy']:.4f} with their average")
    seconds = time.perf_counter() - start
    val_losses = [r.get("val_loss", np.inf) for r in rows]
    if spec.test_time_flips:
        model = with_test_time_flips(model)
    return TrainResult(model=model, history=rows, epochs_run=len(rows),
                       best_epoch=int(np.argmin(val_losses)) + 1 if rows else 0,
                       training_seconds=seconds, num_train=len(split.train_idx), split=split,
                       details=details)


def _warm_up_head(model: keras.Model, step_model: keras.Model, spec: ModelSpec,
                  data: dict) -> dict:
    """Train the new head alone for ``spec.head_warmup_epochs`` (the base frozen, Adam at the
    head's 1e-3), so that fine-tuning starts from a sensible head instead of sending random
    gradients into the pretrained layers; then make the base trainable above its cut again."""
    base = base_layer(model)
    base.trainable = False
    recorder = EpochRecorder(spec.head_warmup_epochs, 0)
    start = time.perf_counter()
    fit_on_flips(step_model, epochs=spec.head_warmup_epochs,
                 optimizer=make_optimizer("adam", HEAD_LEARNING_RATE), callbacks=[recorder],
                 callback_model=model, **data)
    base.trainable = True  # re-freezes below: setting it resets every sublayer
    if spec.frozen_through:
        freeze_through(base, spec.frozen_through)
    keep_batch_norm_in_inference_mode(base)
    last = recorder.rows[-1] if recorder.rows else {}
    return {"epochs": len(recorder.rows), "seconds": round(time.perf_counter() - start, 3),
            "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss")}


def _use_weight_average(optimizer: keras.optimizers.Optimizer, step_model: keras.Model,
                        data: dict, last_epoch: dict) -> dict:
    """Give ``step_model`` the optimizer's moving average of its weights, and validate it.

    The epoch logs were validated on each epoch's last weights; the validation of the
    average is recorded beside the last epoch's, so every run shows what averaging changed.
    """
    optimizer.finalize_variable_values(step_model.trainable_variables)
    summary = {"momentum": optimizer.ema_momentum,
               "last_weights_val_accuracy": last_epoch.get("val_accuracy"),
               "last_weights_val_loss": last_epoch.get("val_loss")}
    val_rows = data["val_rows"]
    if val_rows is not None and len(val_rows):
        summary.update(_evaluate(_eval_step(step_model), data["source"].plain(val_rows),
                                 data["y_val"], max(data["batch_size"], EVAL_BATCH)))
    return summary
