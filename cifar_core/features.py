"""Frozen-base training on cached backbone features: the same run, orders of magnitude cheaper.

A frozen base in inference mode (``training=False``) is a fixed function of its input. When the
only augmentation is random flips, the inputs it can ever see are the four flip variants of each
image (identity, horizontal, vertical, both), so its outputs can be computed once and stored.
The same holds for the frozen lower part of a base fine-tuned only above a layer
(``ModelSpec.frozen_through``, model 8): its output maps are cached and the upper part trains
on them. A spec without vertical flips needs two variants only (identity, horizontal).

- ``load_or_build_features`` computes the base's features for the four variants of every
  training and test image (a progress bar while it runs) and stores them under
  ``<cache>/features/<name>/``, keyed by backbone, weights (SHA-256 of the weight values),
  input size and data set content hash. The folder is written under a temporary name and
  renamed into place, so a cache is complete or absent; one whose recorded key differs in any
  part is never reused.
- ``train_frozen_base`` trains the head on those features, drawing one variant per image per
  epoch (``FlipSampler``: seeded, the same draws for the same seed), with the callbacks of
  ``train()`` (history rows, progress, early stopping restoring the best weights). The head
  layers are the full model's own layers, so the result is the end-to-end model (raw 32x32
  images in, the layer names of ``build_model``) and is saved like any other run's.

With ``TrainConfig.feature_cache`` off, the same loop runs the whole frozen network on the
flipped images instead (nothing stored on disk): same draws, same metrics up to float rounding.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_core import settings
from cifar_core.data.dataset import Dataset, Split
from cifar_core.errors import ConfigError, DataError
from cifar_core.models.backbone import weights_identity
from cifar_core.models.builder import (
    build_model,
    freeze_through,
    keep_batch_norm_in_inference_mode,
    make_optimizer,
    with_test_time_flips,
)
from cifar_core.models.specs import ModelSpec
from cifar_core.runs.files import atomic_write_json, read_json

CACHE_FORMAT = 2  # bump when the stored layout or the feature computation changes
FEATURES_SUBDIR = "features"
FLIP_VARIANTS = ("identity", "horizontal", "vertical", "both")  # index = variant number
PREPROCESS = "mobilenet: x / 127.5 - 1"  # part of the key: the features depend on it
EXTRACT_BATCH = 250
STEPS_PER_CALL = 32  # optimizer steps per graph call when training on features
EVAL_BATCH = 1000  # validation batches (no optimizer step: only the per-call cost matters)


class _ExpectedRetracing(logging.Filter):
    """Every fold of a search builds a new head, hence new graph functions: TensorFlow's
    'triggered tf.function retracing' warning about ours is expected, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = "fit_on_flips.<locals>" in message or "_write_features.<locals>" in message
        return not (ours and "triggered tf.function retracing" in message)


tf.get_logger().addFilter(_ExpectedRetracing())


# --- flips -------------------------------------------------------------------------------

def flip_images(images: np.ndarray, variants: np.ndarray | int) -> np.ndarray:
    """Each image (N, H, W, C) flipped by its variant: 0 none, 1 horizontal, 2 vertical, 3 both.

    Horizontal mirrors left-right (the width axis), vertical mirrors up-down (the height axis),
    as Keras's ``RandomFlip`` does for channels-last images.
    """
    variants = np.broadcast_to(np.asarray(variants), (len(images),))
    out = np.array(images, copy=True)
    horizontal = (variants == 1) | (variants == 3)
    vertical = (variants == 2) | (variants == 3)
    out[horizontal] = out[horizontal][:, :, ::-1]
    out[vertical] = out[vertical][:, ::-1]
    return out


class FlipSampler:
    """Per epoch: an order over ``n`` images and one flip variant for each, seeded.

    Uniform over the first ``num_variants`` variants, independently per image and epoch: with
    four, the distribution of random horizontal and vertical flips drawn on separate coins;
    with two, a random mirror image.
    """

    def __init__(self, n: int, seed: int, num_variants: int = len(FLIP_VARIANTS)):
        self.n, self.seed, self.num_variants = int(n), int(seed), int(num_variants)

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(epoch)])
        return rng.permutation(self.n), rng.integers(0, self.num_variants, size=self.n)

    def shifts(self, epoch: int, max_shift: int) -> np.ndarray:
        """Per image (in the order of ``epoch``'s draw), a (down, right) translation of at
        most ``max_shift`` in each direction, uniform; a stream of its own, so that turning
        shifts on leaves the order and the flips of every epoch unchanged."""
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        return rng.integers(-max_shift, max_shift + 1, size=(self.n, 2))

    def cutout_centers(self, epoch: int) -> np.ndarray:
        """Per image (in the order of ``epoch``'s draw), the (row, column) centre of its cut-out
        window as fractions of the height and width in [0, 1), uniform; a stream of its own."""
        return np.random.default_rng([self.seed, int(epoch), 2]).random(size=(self.n, 2))


def translate(batch: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each map of ``batch`` (N, H, W, C) moved down by ``shifts[i, 0]`` and right by
    ``shifts[i, 1]`` cells (negative: up, left), the uncovered border filled with zeros.

    On the cached block-6 maps of model 8 one cell is 16 px of the 144-px input, about 3.6 px
    of the 32-px image: close to the standard CIFAR random-crop augmentation (4 px of
    padding), applied where the cache makes it free. Zero is what a ReLU map holds where
    nothing fires.
    """
    s = int(np.abs(shifts).max(initial=0))
    if s == 0:
        return batch
    height, width = batch.shape[1:3]
    padded = np.pad(batch, ((0, 0), (s, s), (s, s), (0, 0)))
    out = np.empty_like(batch)
    for down in range(-s, s + 1):
        for right in range(-s, s + 1):
            chosen = (shifts[:, 0] == down) & (shifts[:, 1] == right)
            if chosen.any():
                out[chosen] = padded[chosen, s - down:s - down + height,
                                     s - right:s - right + width]
    return out


def cut_out(batch: np.ndarray, centers: np.ndarray, size: int) -> np.ndarray:
    """``batch`` (N, H, W, C) with a ``size`` x ``size`` window of each map set to zero, centred
    at ``centers[i]`` (fractions of H and W in [0, 1)) and clipped at the border (cutout).

    Applied to the cached block-6 maps it hides a part of the image from the layers above the
    cut (a 3-cell window is about a third of the image's side), so they cannot lean on any one
    region.
    """
    height, width = batch.shape[1:3]
    top = np.floor(centers[:, 0] * height).astype(int) - size // 2
    left = np.floor(centers[:, 1] * width).astype(int) - size // 2
    rows, cols = np.arange(height), np.arange(width)
    hidden = (((rows >= top[:, None]) & (rows < top[:, None] + size))[:, :, None]
              & ((cols >= left[:, None]) & (cols < left[:, None] + size))[:, None, :])
    return np.where(hidden[..., None], np.zeros((), batch.dtype), batch)


def flip_variants(spec: ModelSpec) -> tuple[str, ...]:
    """The flip variants the spec's augmentation draws from (a prefix of ``FLIP_VARIANTS``)."""
    return FLIP_VARIANTS if spec.vertical_flips else FLIP_VARIANTS[:2]


# --- when the cache applies ----------------------------------------------------------------

def uses_frozen_features(spec: ModelSpec) -> bool:
    """A frozen backbone, or a frozen lower part of one, whose only augmentation is flips:
    its features can be precomputed.

    Any other ``augment_*`` option of the spec (none exists yet) makes inputs unbounded and
    rules the cache out.
    """
    if spec.stem != "mobilenet" or not (spec.freeze_backbone or spec.frozen_through):
        return False
    other = [f.name for f in fields(spec)
             if f.name.startswith("augment_") and f.name != "augment_flips"]
    return not any(getattr(spec, name) for name in other)


# --- the parts of a built model ------------------------------------------------------------

def cut_layer(spec: ModelSpec) -> str | None:
    """The base layer whose output is cached: None for the whole base (frozen base)."""
    return None if spec.freeze_backbone else spec.frozen_through


def trunk_input(model: keras.Model):
    """The tensor after augmentation: what the base's preprocessing receives."""
    return model.get_layer("mobilenet_preprocess").input


def base_layer(model: keras.Model) -> keras.Model:
    """The backbone, a model nested in one built by ``build_model``."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model)
                and layer.name.startswith("mobilenet"))


def _base_output(model: keras.Model):
    """The base's output as a tensor of the outer model (the head's input)."""
    first = "average_pool" if any(layer.name == "average_pool" for layer in model.layers) \
        else "flatten"
    return model.get_layer(first).input


def _base_input(model: keras.Model):
    """What the base receives in the outer model: the preprocessed (resized) images."""
    before = "upsample" if any(layer.name == "upsample" for layer in model.layers) \
        else "mobilenet_preprocess"
    return model.get_layer(before).output


def feature_extractor(model: keras.Model, cut: str | None = None) -> keras.Model:
    """Preprocessing (+ resizing) and the base, or the base up to ``cut``, from a model built
    by ``build_model`` (sharing its weights)."""
    if cut is None:
        return keras.Model(trunk_input(model), _base_output(model), name="feature_extractor")
    base = base_layer(model)
    lower = keras.Model(base.input, base.get_layer(cut).output, name="lower_base")
    return keras.Model(trunk_input(model), lower(_base_input(model)), name="feature_extractor")


def head_model(model: keras.Model, cut: str | None = None) -> keras.Model:
    """The layers after the base (pooling, hidden, dropout, classifier), or after ``cut``
    (the upper base and those layers), sharing weights."""
    head = keras.Model(_base_output(model), model.output, name="head")
    if cut is None:
        return head
    base = base_layer(model)
    upper = keras.Model(base.get_layer(cut).output, base.output, name="upper_base")
    inputs = keras.Input(upper.input.shape[1:], name="features")
    return keras.Model(inputs, head(upper(inputs)), name="upper_and_head")


def trunk_model(model: keras.Model) -> keras.Model:
    """The whole network without its augmentation layer, sharing weights."""
    return keras.Model(trunk_input(model), model.output, name="trunk")


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 of the weight values (shapes, dtypes, bytes in order): the weights' identity,
    whatever they came from (a file, the ImageNet download, a seeded random init)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.shape}{value.dtype.str}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# --- the cache -----------------------------------------------------------------------------

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
        "backbone": spec.backbone,
        "alpha": spec.backbone_alpha,
        "input_size": spec.input_size,
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


# --- training on features ------------------------------------------------------------------

class CachedSource:
    """Training inputs read from the cache: base features of the drawn flip variants, in the
    cache's dtype (float16: half the bytes to move; the training graph casts)."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache

    def batch(self, rows: np.ndarray, variants: np.ndarray,
              shifts: np.ndarray | None = None,
              cutout: tuple[np.ndarray, int] | None = None) -> np.ndarray:
        maps = self.cache.train[variants, rows]
        if shifts is not None:
            maps = translate(maps, shifts)
        return maps if cutout is None else cut_out(maps, *cutout)

    def plain(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.cache.train[0, rows])


class ImageSource:
    """Training inputs computed on the fly: the flipped images themselves (the network runs
    the frozen base every step, as end-to-end training does)."""

    def __init__(self, images: np.ndarray, pixels_per_cell: float = 1):
        self.images = images
        # One cell of the cut's map in pixels of the stored image: 32 / 9 for a 9x9 map, not
        # a whole number, so each move is rounded to the nearest pixel.
        self.pixels_per_cell = float(pixels_per_cell)

    def _pixels(self, cells):
        return np.rint(np.asarray(cells) * self.pixels_per_cell).astype(int)

    def batch(self, rows: np.ndarray, variants: np.ndarray,
              shifts: np.ndarray | None = None,
              cutout: tuple[np.ndarray, int] | None = None) -> np.ndarray:
        images = flip_images(self.images[rows], variants)
        if shifts is not None:  # the same translation, in the image's own pixels
            images = translate(images, self._pixels(shifts))
        if cutout is not None:  # the same window, in the image's own pixels
            centers, size = cutout
            images = cut_out(images, centers, int(self._pixels(size)))
        return images

    def plain(self, rows: np.ndarray) -> np.ndarray:
        return self.images[rows]


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
    from cifar_core.training.train import EpochRecorder, TrainResult

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
    from cifar_core.training.config import HEAD_LEARNING_RATE
    from cifar_core.training.train import EpochRecorder

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
