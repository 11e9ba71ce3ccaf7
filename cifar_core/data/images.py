"""Decode one image file into what every model sees: 32x32 RGB uint8.

Used by the image-folder loader, ``cifar-core predict`` and the dashboard's Classify page, so
training and prediction share one preprocessing. Untrusted files are expected: anything that
is not a decodable image, is truncated, or declares an absurd size gets an ``ImageError``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_core.errors import ImageError

TARGET_SIZE = (32, 32)  # CIFAR resolution; every model takes 32x32 RGB
MAX_PIXELS = 64_000_000  # refuse larger declared sizes (decompression bombs) before decoding
MAX_FILE_BYTES = 64 * 1024 * 1024  # refuse larger files outright
RESAMPLE = Image.Resampling.BICUBIC  # with reducing_gap below: fast and antialiased


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent images on white (transparent pixels carry no colour)."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float grey: scale the value range to 8 bits instead of clipping.
        values = np.asarray(img, dtype=np.float64)
        high = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / high * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    return img.convert("RGB")  # L, P, CMYK, YCbCr, 1 ...


def open_image(source: bytes | str | os.PathLike, *, name: str | None = None) -> Image.Image:
    """Open and fully decode ``source`` (bytes or a path) as an RGB PIL image, safely.

    The first frame is used for animated images. JPEGs are decoded at reduced scale when
    they are much larger than needed, which bounds memory for huge photos.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    if isinstance(source, bytes):
        if len(source) == 0:
            raise ImageError(f"{label}: the file is empty")
        if len(source) > MAX_FILE_BYTES:
            raise ImageError(f"{label}: the file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        stream = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label}: no such file")
        size = path.stat().st_size
        if size == 0:
            raise ImageError(f"{label}: the file is empty")
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{label}: the file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        stream = io.BytesIO(path.read_bytes())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{label}: declares {width}x{height} pixels, more than the "
                                 f"{MAX_PIXELS:,} allowed (a decompression bomb?)")
            img.seek(0)
            if img.format == "JPEG":
                img.draft("RGB", (TARGET_SIZE[0] * 8, TARGET_SIZE[1] * 8))
            img.load()
            img = ImageOps.exif_transpose(img) if img.format == "JPEG" else img
            return _to_rgb(img)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        reason = ("not an image in a format Pillow can read"
                  if isinstance(exc, UnidentifiedImageError) else "too many pixels")
        raise ImageError(f"{label}: {reason}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: cannot decode the image, it may be truncated or "
                         f"corrupted ({exc})") from None


def to_model_input(img: Image.Image) -> np.ndarray:
    """Resize an RGB image to 32x32 (the whole frame, as the data loader does) as uint8."""
    if img.size != TARGET_SIZE:
        img = img.resize(TARGET_SIZE, RESAMPLE, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8).reshape(TARGET_SIZE[1], TARGET_SIZE[0], 3)


def load_image_array(source: bytes | str | os.PathLike, *, name: str | None = None
                     ) -> np.ndarray:
    """``open_image`` then ``to_model_input``: the 32x32x3 uint8 array a model is fed."""
    return to_model_input(open_image(source, name=name))
