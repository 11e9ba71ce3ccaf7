"""What a training returns (``TrainResult``) and the callback that records its epochs
(``EpochRecorder``): shared by ``train()`` and the loop on cached features
(``on_features``), which ``train()`` calls, so they live below both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras

from cifar_core.data.dataset import Split


@dataclass
class TrainResult:
    model: keras.Model
    history: list[dict]  # one dict per epoch, the columns of history.csv
    epochs_run: int
    best_epoch: int
    training_seconds: float
    num_train: int
    split: Split
    details: dict = field(default_factory=dict)  # path-specific facts (e.g. the feature cache)

    @property
    def images_per_second(self) -> float:
        return self.num_train * self.epochs_run / max(self.training_seconds, 1e-9)


class EpochRecorder(keras.callbacks.Callback):
    """Collects per-epoch rows with their duration and reports progress."""

    def __init__(self, epochs: int, steps: int, on_epoch=None, on_batch=None):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.rows: list[dict] = []
        self._on_epoch, self._on_batch = on_epoch, on_batch
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._on_batch:
            self._on_batch(batch + 1, self.steps)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._epoch_start, 3)}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        self.rows.append(row)
        if self._on_epoch:
            self._on_epoch(row, self.epochs)
