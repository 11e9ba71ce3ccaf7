"""The keyed, atomic on-disk cache of frozen-base features (the flips of every image).

``load_or_build_features`` computes the frozen part's output for the flip variants of every
training and test image (a progress bar while it runs) and stores it under
``<cache>/features/<name>/``, keyed by backbone, weights (SHA-256 of the weight values), input
size, cut layer and data set content hash. The folder is written under a temporary name and
renamed into place, so a cache is complete or absent; one whose recorded key differs in any
part is never reused. Computing the features once is what makes training on them orders of
magnitude cheaper than running the frozen part every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_core import settings
from cifar_core.data.dataset import Dataset
from cifar_core.errors import DataError
from cifar_core.features.augment import flip_images, flip_variants
from cifar_core.features.graph import cut_layer
from cifar_core.models.backbone import weights_identity
from cifar_core.models.specs import ModelSpec
from cifar_core.runs.files import atomic_write_json, read_json

CACHE_FORMAT = 2  # bump when the stored layout or the feature computation changes
FEATURES_SUBDIR = "features"
PREPROCESS = "mobilenet: x / 127.5 - 1"  # part of the key: the features depend on it
EXTRACT_BATCH = 250


class ExpectedRetracing(logging.Filter):
    """Every fold of a search builds a new head, hence new graph functions: TensorFlow's
    'triggered tf.function retracing' warning about those made inside the functions named
    ``owners`` is expected, not a problem."""

    def __init__(self, *owners: str):
        super().__init__()
        self.markers = tuple(f"{owner}.<locals>" for owner in owners)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = any(marker in message for marker in self.markers)
        return not (ours and "triggered tf.function retracing" in message)


tf.get_logger().addFilter(ExpectedRetracing("_write_features"))


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 of the weight values (shapes, dtypes, bytes in order): the weights' identity,
    whatever they came from (a file, the ImageNet download, a seeded random init)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.shape}{value.dtype.str}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()



@dataclass
class FeatureCache:
    """Features of the flip variants: ``train[v, i]`` is image ``x_train[i]`` flipped by
    variant ``v`` through the base (likewise ``test``). Arrays are memory-mapped, read-only."""

    path: Path
    key: dict
    train: np.ndarray  # (variants, num_train, *feature_shape), the key's dtype
    test: np.ndarray  # (variants, num_test, *feature_shape)
    built: bool  # computed by this call (False: reused from disk)
    seconds: float  # time to build, or to open

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[2:])


def cache_key(spec: ModelSpec, extractor: keras.Model, dataset: Dataset) -> dict:
    """Everything the stored features depend on.

    Whole-base features are stored as float32, so training on them equals end-to-end training
    up to float rounding; the much larger maps of a cut base as float16 (half the disk and
    memory; the upper part reads them back as float32).
    """
    cut = cut_layer(spec)
    return {
        "format": CACHE_FORMAT,
        "backbone": spec.net.backbone,
        "alpha": spec.net.backbone_alpha,
        "input_size": spec.net.input_size,
        "preprocess": PREPROCESS,
        "cut": cut,
        "variants": list(flip_variants(spec)),
        "dtype": "float32" if cut is None else "float16",
        "weights_sha256": weights_sha256(extractor),
        "data_sha256": dataset.content_hash,
    }


def cache_name(key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    cut = f"-{key['cut']}" if key["cut"] else ""
    return f"{key['backbone']}-a{key['alpha']}-{key['input_size']}px{cut}-{digest[:24]}"


def features_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return settings.cache_dir(cache_dir) / FEATURES_SUBDIR


def _open_cache(path: Path, key: dict, dataset: Dataset) -> FeatureCache | None:
    """The cache at ``path`` if it is complete and was built for exactly ``key``."""
    try:
        meta = read_json(path / "meta.json")
        if meta.get("key") != key:
            return None
        arrays = {}
        for split, count in (("train", len(dataset.x_train)), ("test", len(dataset.x_test))):
            array = np.load(path / f"{split}.npy", mmap_mode="r", allow_pickle=False)
            expected = (len(key["variants"]), count, *meta["feature_shape"])
            if array.shape != expected or array.dtype != np.dtype(key["dtype"]):
                return None
            arrays[split] = array
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
    return FeatureCache(path=path, key=key, train=arrays["train"], test=arrays["test"],
                        built=False, seconds=0.0)


def _progress_bar(total: int, show: bool, variants: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=f"backbone features ({variants} flips)",
                disable=not show, dynamic_ncols=True)


def load_or_build_features(extractor: keras.Model, spec: ModelSpec, dataset: Dataset, *,
                           cache_dir: str | os.PathLike | None = None,
                           weights: str | None = None, show_progress: bool = True,
                           on_progress: Callable[[int, int], None] | None = None,
                           log: Callable[[str], None] | None = None) -> FeatureCache:
    """Reuse the features of exactly this base, input size and data set, or compute them."""
    start = time.perf_counter()
    key = cache_key(spec, extractor, dataset)
    root = features_root(cache_dir)
    final = root / cache_name(key)
    cached = _open_cache(final, key, dataset) if final.is_dir() else None
    if cached is not None:
        cached.seconds = time.perf_counter() - start
        if log:
            log(f"backbone features: reusing {final}")
        return cached
    if final.exists():  # a folder of that name built for something else, or damaged
        shutil.rmtree(final, ignore_errors=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the feature cache folder {root}: "
                        f"{exc.strerror or exc}") from None
    needed = (len(key["variants"]) * (len(dataset.x_train) + len(dataset.x_test))
              * int(np.prod(extractor.output_shape[1:])) * np.dtype(key["dtype"]).itemsize)
    free = shutil.disk_usage(root).free
    if needed > free * 0.9:
        raise DataError(f"the feature cache needs {needed / 2**30:.1f} GiB under {root} and "
                        f"{free / 2**30:.1f} GiB are free: point {settings.ENV_CACHE} at a "
                        "larger disk, or train without the cache (--no-feature-cache)")
    staging = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        feature_shape = _write_features(extractor, dataset, staging, len(key["variants"]),
                                        np.dtype(key["dtype"]), show_progress, on_progress)
        meta = {"key": key, "feature_shape": list(feature_shape),
                "num_train": len(dataset.x_train), "num_test": len(dataset.x_test),
                "dtype": key["dtype"], "dataset": {"name": dataset.name,
                                                   "source": dataset.source},
                "weights": weights_identity(weights) if weights is not None else None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - start, 3)}
        atomic_write_json(staging / "meta.json", meta)
        try:
            os.rename(staging, final)  # atomic: the cache appears complete or not at all
        except OSError:
            if not final.is_dir():  # not a concurrent build that finished first
                raise
    except OSError as exc:
        raise DataError(f"could not write the feature cache under {root}: "
                        f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    cache = _open_cache(final, key, dataset)
    if cache is None:
        raise DataError(f"the feature cache {final} could not be read back after writing it")
    cache.built, cache.seconds = True, time.perf_counter() - start
    if log:
        log(f"backbone features: computed in {cache.seconds:.1f}s into {final}")
    return cache


def _write_features(extractor: keras.Model, dataset: Dataset, folder: Path, variants: int,
                    dtype: np.dtype, show_progress: bool,
                    on_progress: Callable[[int, int], None] | None) -> tuple[int, ...]:
    feature_shape = tuple(int(d) for d in extractor.output_shape[1:])
    run = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
    splits = (("train", dataset.x_train), ("test", dataset.x_test))
    total = variants * sum(len(x) for _, x in splits)
    done = 0
    with _progress_bar(total, show_progress, variants) as bar:
        for split, images in splits:
            out = np.lib.format.open_memmap(
                folder / f"{split}.npy", mode="w+", dtype=dtype,
                shape=(variants, len(images), *feature_shape))
            for variant in range(variants):
                for begin in range(0, len(images), EXTRACT_BATCH):
                    batch = flip_images(images[begin:begin + EXTRACT_BATCH], variant)
                    out[variant, begin:begin + len(batch)] = run(
                        tf.constant(batch, dtype=tf.float32)).numpy()
                    done += len(batch)
                    bar.update(len(batch))
                    if on_progress:
                        on_progress(done, total)
            out.flush()
            del out
            with open(folder / f"{split}.npy", "rb") as handle:
                os.fsync(handle.fileno())
    return feature_shape
