"""What a training minimises and how it steps, from a spec's recipe: one function for the
end-to-end ``fit`` of ``train()`` and for the ``fit`` on cached features, so both paths accept
the same recipes.

``recipe_optimizer``: the configured optimizer at the configured step size, constant or decayed
to zero along a cosine over the run (``keras.optimizers.schedules.CosineDecay``), keeping a
moving average of the weights where the recipe asks (the optimizer's ``use_ema``: ``fit``
ends by putting the average in place). ``objective``: sparse categorical cross-entropy,
label-smoothed where the recipe asks (the loss's own ``label_smoothing``), with the plain
cross-entropy of the validation images logged as ``val_loss`` either way.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cifar_core.errors import ConfigError
from cifar_core.models.builder import make_optimizer
from cifar_core.models.specs import Recipe


def recipe_optimizer(recipe: Recipe, *, optimizer: str, learning_rate: float, epochs: int,
                     steps_per_epoch: int, patience: int) -> keras.optimizers.Optimizer:
    """The optimizer a run of ``recipe`` steps with. Early stopping (``patience`` > 0)
    restores its best epoch's weights, so then no average is kept."""
    step = learning_rate
    if recipe.lr_schedule == "cosine":
        step = keras.optimizers.schedules.CosineDecay(learning_rate,
                                                      decay_steps=epochs * steps_per_epoch)
    weight_ema = recipe.weight_ema if patience == 0 else 0.0
    return make_optimizer(optimizer, step, weight_ema)


def objective(label_smoothing: float, num_classes: int) -> tuple:
    """``(loss, metrics, callbacks)`` for ``compile`` and ``fit``: the loss against targets
    smoothed by ``label_smoothing`` (0: plain), ``accuracy``, and where smoothing is on a
    plain cross-entropy metric that ``PlainValidationLoss`` logs as ``val_loss``."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    if not label_smoothing:
        return "sparse_categorical_crossentropy", ["accuracy"], []
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def smoothed_cross_entropy(y, probs):  # integer labels, as everywhere in the project
        return smoothed(tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), num_classes), probs)

    metrics = ["accuracy", keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")]
    return smoothed_cross_entropy, metrics, [PlainValidationLoss()]


class PlainValidationLoss(keras.callbacks.Callback):
    """Logs the plain cross-entropy of the validation images as ``val_loss`` (and drops the
    metric's own columns), so that early stopping and history.csv read the same quantity with
    and without label smoothing. It must come first among the callbacks: they share one logs
    dict."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        plain = logs.pop("val_cross_entropy", None)
        logs.pop("cross_entropy", None)
        if plain is not None:
            logs["val_loss"] = plain
