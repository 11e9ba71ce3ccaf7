"""The search's own loop for small heads on cached features: ``fit_head``, the one training
path besides Keras ``fit`` (``cifar_core.training.on_features.fit_on_features``), with the same
interface, used by model 7's cached trials only.

Why it stays: a search trial trains a small dense head (e.g. 1024-64 on 1x1x1024 features,
batch 250), where the cost per optimizer step, not the arithmetic, sets the pace. Measured side
by side in one process (``python benchmarks/features_loop.py --mode head --images 26667
--epochs 20``, 2-core AMD EPYC, Keras 3.15.1, 2026-12-02; BENCHMARKS.md "One training loop"):
one fold of 20 epochs took 15.2-17.2 s here against 21.4-23.1 s with ``fit`` on a
``PyDataset`` (and 19.4-21.4 s with ``fit`` on a ``tf.data`` pipeline of stacked batches): ``fit``
would add about a third to stage 1 of the report's search (90 such folds). For model 8's
blocks ``fit`` is as fast (same benchmark, ``--mode model8``), so ``train()`` uses ``fit``.

The loop runs ``steps_per_call`` optimizer steps inside one graph call over a chunk of
inputs, gathers the next chunk in a thread meanwhile, and drives Keras callbacks with epoch
logs like ``fit``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import keras
import numpy as np
import tensorflow as tf

from cifar_core.features import FLIP_VARIANTS, FlipSampler
from cifar_core.features.cache import ExpectedRetracing
from cifar_core.training.objective import objective
from cifar_core.training.on_features import EVAL_BATCH, STEPS_PER_CALL

tf.get_logger().addFilter(ExpectedRetracing("fit_head"))


def fit_head(step_model: keras.Model, *, source, train_rows: np.ndarray,
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
    train_loss_fn = objective(label_smoothing, step_model.output_shape[-1])[0] \
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
