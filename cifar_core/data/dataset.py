"""The in-memory data set every loader returns, its identity, and the report's split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sklearn.model_selection import train_test_split

from cifar_core.errors import ConfigError, DataError

VALIDATION_FRACTION = 0.2  # the report holds out 20% of the training set, stratified by class
IMAGE_SHAPE = (32, 32, 3)  # every image is 32x32 RGB uint8, as in CIFAR


@dataclass
class Dataset:
    """Train and test images (uint8, N x 32 x 32 x 3) with fine and optional coarse labels.

    ``coarse_*`` fields are None for data sets without superclasses.
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    superclass_names: list[str] | None = None
    fine_to_coarse: np.ndarray | None = None  # fine class index -> superclass index
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_superclasses(self) -> bool:
        return self.fine_to_coarse is not None

    @property
    def y_train_coarse(self) -> np.ndarray | None:
        return None if self.fine_to_coarse is None else self.fine_to_coarse[self.y_train]

    @property
    def y_test_coarse(self) -> np.ndarray | None:
        return None if self.fine_to_coarse is None else self.fine_to_coarse[self.y_test]

    def validate(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train),
                            ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
                raise DataError(f"{self.source}: {split} images must be uint8 (N, 32, 32, 3), "
                                f"found {x.dtype} {x.shape}")
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{self.source}: {split} has {len(x)} images but labels of "
                                f"shape {y.shape}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.source}: {split} labels must lie in "
                                f"[0, {self.num_classes}), found [{y.min()}, {y.max()}]")
        if self.fine_to_coarse is not None:
            if self.superclass_names is None or len(self.fine_to_coarse) != self.num_classes:
                raise DataError(f"{self.source}: superclass mapping does not cover every class")
            if self.fine_to_coarse.min() < 0 or (
                    self.fine_to_coarse.max() >= len(self.superclass_names)):
                raise DataError(f"{self.source}: superclass index out of range")

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 over pixels, labels and names: two loads of the same data agree."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                           copy=False).tobytes())
        digest.update("\n".join(self.class_names).encode())
        if self.fine_to_coarse is not None:
            digest.update("\n".join(self.superclass_names or []).encode())
            digest.update(self.fine_to_coarse.astype("<i8").tobytes())
        return digest.hexdigest()

    def identity(self) -> dict:
        """What ``config.json`` records so every number can be traced to its data."""
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.content_hash,
            "num_train": len(self.x_train),
            "num_test": len(self.x_test),
            "num_classes": self.num_classes,
            "num_superclasses": len(self.superclass_names) if self.superclass_names else None,
            "class_names": list(self.class_names),
            "superclass_names": list(self.superclass_names) if self.superclass_names else None,
            "fine_to_coarse": self.fine_to_coarse.tolist()
            if self.fine_to_coarse is not None else None,
        }


@dataclass
class Split:
    """Index arrays into ``Dataset.x_train``: the report's train/validation split."""

    train_idx: np.ndarray
    val_idx: np.ndarray


def training_split_size(num_images: int,
                        validation_fraction: float = VALIDATION_FRACTION) -> int:
    """How many of ``num_images`` training images ``stratified_split`` keeps for training.

    scikit-learn holds out ``ceil(fraction * n)``; knowing the size without the labels lets a
    batch size be checked against the data before any work starts.
    """
    return num_images - math.ceil(validation_fraction * num_images)


def stratified_split(labels: np.ndarray, *, seed: int,
                     validation_fraction: float = VALIDATION_FRACTION) -> Split:
    """Hold out ``validation_fraction`` of every class, seeded (400/100 per CIFAR-100 class)."""
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"validation fraction must lie in (0, 1), got {validation_fraction}")
    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    if counts[counts > 0].min() < 2:
        raise DataError("every class needs at least 2 training images for a stratified split")
    classes = int(np.count_nonzero(counts))
    kept = training_split_size(len(labels), validation_fraction)
    for side, size in (("validation", len(labels) - kept), ("training", kept)):
        if size < classes:  # scikit-learn's own refusal names neither the option nor a fix
            raise DataError(
                f"a validation fraction of {validation_fraction:g} of {len(labels)} images "
                f"leaves {size} for {side}, fewer than the {classes} classes: a stratified "
                "split needs each class on both sides; change the validation fraction or "
                "use more images")
    train_idx, val_idx = train_test_split(
        indices, test_size=validation_fraction, stratify=labels, random_state=seed
    )
    return Split(train_idx=np.sort(train_idx), val_idx=np.sort(val_idx))
