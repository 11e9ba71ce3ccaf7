"""Seeded augmentation of training inputs where the feature cache makes it free.

Flips of images (``flip_images``), and on the cached maps of a cut base shifts
(``translate``) and cut-out windows (``cut_out``). ``FlipSampler`` draws them per epoch from
the seed, each kind from a stream of its own, so the cached and the on-the-fly inputs of a run
see exactly the same batches. Plain NumPy on arrays (N, H, W, C): nothing here trains.
"""

from __future__ import annotations

import numpy as np

from cifar_core.models.specs import ModelSpec

FLIP_VARIANTS = ("identity", "horizontal", "vertical", "both")  # index = variant number


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
    return FLIP_VARIANTS if spec.aug.vertical_flips else FLIP_VARIANTS[:2]
