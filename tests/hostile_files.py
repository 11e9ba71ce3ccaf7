"""Odd, broken and hostile image files, made on the fly for the reliability tests."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header declares side x side pixels (10 gigapixels by default)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(size=(48, 40), mode="RGB") -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    rgb = Image.fromarray(x.astype(np.uint8), "RGB")
    return rgb if mode == "RGB" else rgb.convert(mode)


def valid_images() -> dict[str, bytes]:
    """Valid files of many formats and modes; each must be classified. A new dict each
    call (the files themselves are made once: the 6000x4000 JPEG takes about half a second,
    and every parametrized test asks for them)."""
    return dict(_valid_images())


@functools.cache
def _valid_images() -> dict[str, bytes]:
    rgba = gradient(mode="RGBA")
    rgba.putalpha(128)
    sixteen = Image.fromarray((np.arange(40 * 48).reshape(40, 48) * 30).astype(np.uint16))
    frames = [gradient(), Image.new("RGB", (48, 40), (255, 0, 0))]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "rgb.png": encode(gradient(), "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "palette.png": encode(gradient(mode="P"), "PNG"),
        "grey.png": encode(gradient(mode="L"), "PNG"),
        "16bit.png": encode(sixteen, "PNG"),
        "photo.jpg": encode(gradient(), "JPEG"),
        "cmyk.jpg": encode(gradient(mode="CMYK"), "JPEG"),
        "image.bmp": encode(gradient(), "BMP"),
        "image.webp": encode(gradient(), "WEBP"),
        "animated.gif": animated.getvalue(),
        "huge.jpg": encode(gradient(size=(6000, 4000)), "JPEG", quality=70),
    }


def invalid_images() -> dict[str, bytes]:
    """Files that must be refused with a clear message."""
    png = encode(gradient(), "PNG")
    jpeg = encode(gradient(size=(200, 200)), "JPEG")
    return {
        "empty.png": b"",
        "text.png": b"this is not an image, just text renamed to .png\n",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "bomb.png": decompression_bomb_png(),
    }
