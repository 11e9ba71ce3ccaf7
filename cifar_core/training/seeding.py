"""One global seed for Python, NumPy and TensorFlow, as in the report."""

from __future__ import annotations

import keras
import tensorflow as tf


def set_global_seed(seed: int, *, deterministic: bool = True) -> None:
    """Seed every generator; with ``deterministic``, also make TF ops deterministic, so two
    runs with one seed give the same numbers (at some speed cost on multi-core CPUs)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
