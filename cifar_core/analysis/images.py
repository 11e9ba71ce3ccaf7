"""Test images behind a run's numbers: predictions, galleries, augmentation previews.

A run's ``config.json`` records where its data came from (``dataset.source``) and the data's
content hash; images are loaded from there, never downloaded, and only shown when the hash
still matches (so a gallery never pairs predictions with different pictures).
"""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_core import settings
from cifar_core.analysis.classes import class_names, output_to_superclass
from cifar_core.analysis.names import readable
from cifar_core.data.dataset import Dataset
from cifar_core.errors import CifarCoreError, DataError, RunFolderError
from cifar_core.runs.store import PREDICTIONS_FILE, RunRecord

PREDICTION_ARRAYS = ("test_index", "y_true", "y_pred", "top_classes", "top_probs")
FLIP_NAMES = {(False, False): "as is", (True, False): "horizontal flip",
              (False, True): "vertical flip", (True, True): "both flips (180°)"}


def load_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``predictions.npz`` (read without pickle), checked for the arrays and their lengths."""
    file = Path(run_dir) / PREDICTIONS_FILE
    if not file.is_file():
        raise RunFolderError(f"{file}: missing; this run has no saved test predictions")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RunFolderError(f"{file}: unreadable ({type(exc).__name__}: {exc})") from None
    missing = [name for name in PREDICTION_ARRAYS if name not in arrays]
    if missing:
        raise RunFolderError(f"{file}: lacks {', '.join(missing)}")
    n = len(arrays["y_true"])
    if any(len(arrays[name]) != n for name in PREDICTION_ARRAYS):
        raise RunFolderError(f"{file}: arrays of different lengths")
    return arrays


@dataclass(frozen=True)
class Example:
    """One test image's outcome (classes are indices of the run's outputs)."""

    test_index: int
    true_class: int
    predicted_class: int
    confidence: float  # probability of the predicted class


def select_examples(predictions: dict[str, np.ndarray], *, true_class: int,
                    predicted_class: int | None = None, correct: bool | None = None,
                    mapping: np.ndarray | None = None, limit: int = 12) -> list[Example]:
    """Test images of one class, or of one confusion cell, most confident first.

    ``correct=True/False``: the class's correct / misclassified images. ``predicted_class``:
    the images of the cell (true, predicted). ``mapping`` (output class -> superclass) makes
    ``true_class`` and ``predicted_class`` superclass indices.
    """
    y_true = predictions["y_true"].astype(np.int64)
    y_pred = predictions["y_pred"].astype(np.int64)
    true_key = mapping[y_true] if mapping is not None else y_true
    pred_key = mapping[y_pred] if mapping is not None else y_pred
    mask = true_key == true_class
    if predicted_class is not None:
        mask &= pred_key == predicted_class
    if correct is True:
        mask &= y_true == y_pred
    elif correct is False:
        mask &= y_true != y_pred
    chosen = np.flatnonzero(mask)
    confidence = predictions["top_probs"][:, 0].astype(np.float64)
    order = chosen[np.lexsort((chosen, -confidence[chosen]))][:max(0, limit)]
    return [Example(test_index=int(predictions["test_index"][i]), true_class=int(y_true[i]),
                    predicted_class=int(y_pred[i]), confidence=float(confidence[i]))
            for i in order]


def pick_test_image(predictions: dict[str, np.ndarray], true_class: int | None = None,
                    draw: int = 0) -> Example | None:
    """A test image of the run's predictions, of ``true_class`` (None: any), chosen by the
    number ``draw`` (the same number, the same image; the next number, usually another);
    None when the run has no test image of that class."""
    candidates = np.arange(len(predictions["y_true"]))
    if true_class is not None:
        candidates = candidates[predictions["y_true"] == true_class]
    if not len(candidates):
        return None
    rng = np.random.default_rng([int(draw), 0 if true_class is None else int(true_class) + 1])
    at = int(rng.choice(candidates))
    return Example(test_index=int(predictions["test_index"][at]),
                   true_class=int(predictions["y_true"][at]),
                   predicted_class=int(predictions["y_pred"][at]),
                   confidence=float(predictions["top_probs"][at, 0]))


def upscale(image: np.ndarray, size: int = 96) -> np.ndarray:
    """Enlarge a 32x32 image with nearest-neighbour so pixels stay pixels."""
    return np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).resize(
        (size, size), Image.Resampling.NEAREST))


@dataclass(frozen=True)
class GalleryItem:
    image: np.ndarray  # upscaled RGB uint8
    caption: str
    example: Example
    original: np.ndarray | None = None  # the 32x32 test image as stored (for saliency)


def gallery(examples: list[Example], images: np.ndarray, metrics: dict,
            size: int = 96) -> list[GalleryItem]:
    """Captioned, enlarged test images for ``examples`` (from ``select_examples``); the
    captions name the classes in words."""
    names = class_names(metrics)
    items = []
    for example in examples:
        if not 0 <= example.test_index < len(images):
            raise DataError(f"test image {example.test_index} is out of range: the data set "
                            f"has {len(images)} test images")
        caption = (f"#{example.test_index}: true {readable(names[example.true_class])}, "
                   f"predicted {readable(names[example.predicted_class])} "
                   f"({100 * example.confidence:.0f}%)")
        original = images[example.test_index]
        items.append(GalleryItem(upscale(original, size), caption, example, original))
    return items


def cell_examples(predictions: dict[str, np.ndarray], metrics: dict, true_index: int,
                  predicted_index: int, level: str = "superclass",
                  limit: int = 12) -> list[Example]:
    """Examples of one confusion cell at the superclass level or the run's own classes."""
    mapping = output_to_superclass(metrics) if level == "superclass" else None
    if mapping is not None and metrics.get("label_set") == "coarse":
        mapping = None  # a coarse run's outputs are already superclasses
    return select_examples(predictions, true_class=true_index, predicted_class=predicted_index,
                           mapping=mapping, limit=limit)


# --- the data set behind a run -----------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _load_checked(source: str, sha256: str | None) -> Dataset:
    from cifar_core.data import load_dataset

    dataset = load_dataset(source, allow_download=False, show_progress=False)
    if sha256 and dataset.content_hash != sha256:
        raise DataError(f"{source}: the data there changed since the run was trained (content "
                        f"hash {dataset.content_hash[:12]}, the run used {sha256[:12]}); its "
                        "images would not match the run's predictions")
    return dataset


def run_dataset(record: RunRecord, fallback_source: str | None = None) -> Dataset:
    """The data set a run was trained and tested on, from its recorded source.

    ``fallback_source`` (the app's data source setting) is tried when the recorded path is
    gone, e.g. for run folders copied from another machine; it must hold the same data.
    Results are cached per (source, hash), two data sets at most.
    """
    identity = (record.config or {}).get("dataset") or {}
    sha = identity.get("sha256")
    sources = [s for s in (identity.get("source"), fallback_source) if s]
    if not sources:
        raise DataError(f"run {record.run_id} records no data source; set the data source in "
                        "the sidebar to the data set it was trained on")
    errors = []
    for source in dict.fromkeys(sources):
        if not settings.names_cifar100(source) and not Path(source).exists():
            errors.append(f"{source}: not found")
            continue
        try:
            return _load_checked(source, sha)
        except CifarCoreError as exc:
            errors.append(str(exc))
    raise DataError(f"the images of run {record.run_id} are not available: "
                    + "; ".join(errors))


def source_dataset(source: str | None) -> Dataset:
    """The data set at ``source`` (None: CIFAR-100 from the Keras cache); never downloads."""
    return _load_checked(source or "cifar100", None)


def pick_images(dataset: Dataset, split: str = "test", class_index: int | None = None,
                count: int = 6, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` images of ``split`` (of one class when given), seeded."""
    labels = dataset.y_test if split == "test" else dataset.y_train
    candidates = np.arange(len(labels)) if class_index is None else np.flatnonzero(
        labels == class_index)
    rng = np.random.default_rng(seed)
    count = min(max(count, 0), len(candidates))
    return np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]


def flip_augmentation_layer(seed: int):
    """Model 5's augmentation exactly as the builder makes it, seeded (a fresh one per call,
    so the same seed always draws the same flips)."""
    from cifar_core.models.builder import flip_augmentation

    return flip_augmentation(seed)


def identify_flip(original: np.ndarray, variant: np.ndarray) -> str:
    """Which of the four flips turns ``original`` into ``variant`` (for captions)."""
    for (horizontal, vertical), name in FLIP_NAMES.items():
        candidate = original[:, ::-1] if horizontal else original
        candidate = candidate[::-1] if vertical else candidate
        if np.array_equal(candidate, variant):
            return name
    return "other transform"


@functools.lru_cache(maxsize=1)
def flip_transforms(draws: int = 64) -> tuple[str, ...]:
    """The transforms model 5's layer actually produces, found by drawing ``draws`` times.

    A caption states it rather than assuming it: Keras 3's single
    ``RandomFlip("horizontal_and_vertical")`` only ever keeps an image or turns it by 180
    degrees, while the report's augmentation flips each axis on its own coin (four outcomes).
    """
    probe = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) % 251
    batch = np.repeat(probe[None], draws, axis=0)
    flipped = np.asarray(flip_augmentation_layer(seed=0)(batch, training=True))
    found = {identify_flip(probe, image) for image in flipped}
    return tuple(name for name in (*FLIP_NAMES.values(), "other transform") if name in found)


@dataclass(frozen=True)
class AugmentationPreview:
    originals: np.ndarray  # (n, 32, 32, 3) uint8
    variants: np.ndarray  # (n, copies, 32, 32, 3) uint8: what training would feed
    labels: list[list[str]]  # the flip each variant received


def augmentation_previews(images: np.ndarray, copies: int = 4, seed: int = 0
                          ) -> AugmentationPreview:
    """Apply model 5's random flips ``copies`` times to each image, as training does.

    Seeded: the same seed gives the same variants. Each call of the layer is one training
    step's draw, so the copies show the variety the network sees across epochs.
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"expected images of shape (n, 32, 32, 3), got {images.shape}")
    layer = flip_augmentation_layer(seed)
    batch = images.astype(np.float32)
    rounds = [np.asarray(layer(batch, training=True)).round().astype(np.uint8)
              for _ in range(max(1, copies))]
    variants = np.stack(rounds, axis=1)
    labels = [[identify_flip(images[i], variants[i, j]) for j in range(variants.shape[1])]
              for i in range(len(images))]
    return AugmentationPreview(images, variants, labels)
