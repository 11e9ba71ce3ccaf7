"""The training inputs of a run on features: read from the cache, or computed on the fly.

Both sources answer ``batch(rows, variants, shifts, cutout)`` (the drawn flips, shifts and
cut-outs applied) and ``plain(rows)`` (the unflipped inputs, for validation). With
``TrainConfig.feature_cache`` off, ``ImageSource`` gives the flipped images themselves and the
whole frozen network runs on them (nothing stored on disk): same draws, same metrics up to
float rounding.
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_core.features.augment import FlipSampler, cut_out, flip_images, translate
from cifar_core.features.cache import FeatureCache


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


class FlipBatches(keras.utils.PyDataset):
    """The training batches of a run on features, a ``keras.utils.PyDataset`` for
    ``Model.fit``: each epoch its seeded draw from ``FlipSampler`` (an order, a flip variant
    per image, shifts and cut-out windows where asked for), cut into batches of
    ``batch_size`` (the last one short) read from ``source``. ``fit`` does not tell a dataset
    which epoch it is in, so the draw follows the epochs ended (``on_epoch_end``).

    One worker thread reads ahead: the next batches are gathered and shifted in NumPy while
    the graph trains. Measured for model 8 (``benchmarks/features_loop.py --mode model8``):
    as fast as the hand-written loop it replaced (351 against 333 images/s), where a
    ``tf.data`` pipeline of the same reads (``from_generator`` of 32 stacked batches,
    ``unbatch``) reached only about three quarters of that loop's rate.
    """

    def __init__(self, source, rows: np.ndarray, labels: np.ndarray, *, batch_size: int,
                 seed: int, num_variants: int, max_shift: int = 0, cutout: int = 0):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
        self.source, self.rows, self.labels = source, np.asarray(rows), np.asarray(labels)
        self.batch_size, self.max_shift, self.cutout = int(batch_size), max_shift, cutout
        self.sampler = FlipSampler(len(self.rows), seed, num_variants)
        self._draw(0)

    def _draw(self, epoch: int) -> None:
        self.epoch = epoch
        self._order, self._variants = self.sampler.epoch(epoch)
        self._shifts = (self.sampler.shifts(epoch, self.max_shift) if self.max_shift > 0
                        else None)
        self._centers = self.sampler.cutout_centers(epoch) if self.cutout > 0 else None

    def on_epoch_end(self):
        # Not on_epoch_begin: Keras starts the reading thread before it calls that
        # (PyDatasetAdapter.on_epoch_begin), so the first batches of an epoch would race the
        # new draw. At the end of an epoch the thread has stopped.
        self._draw(self.epoch + 1)

    @property
    def num_batches(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        order = self._order[part]
        x = self.source.batch(
            self.rows[order], self._variants[part],
            None if self._shifts is None else self._shifts[part],
            None if self._centers is None else (self._centers[part], self.cutout))
        return x, self.labels[order]
