"""The training inputs of a run on features: read from the cache, or computed on the fly.

Both sources answer ``batch(rows, variants, shifts, cutout)`` (the drawn flips, shifts and
cut-outs applied) and ``plain(rows)`` (the unflipped inputs, for validation). With
``TrainConfig.feature_cache`` off, ``ImageSource`` gives the flipped images themselves and the
whole frozen network runs on them (nothing stored on disk): same draws, same metrics up to
float rounding.
"""

from __future__ import annotations

import numpy as np

from cifar_core.features.augment import cut_out, flip_images, translate
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
