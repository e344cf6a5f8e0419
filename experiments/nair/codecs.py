"""The raw-input baselines' codecs: the sensor image itself, compressed to fit a latency budget.

- `raw_quant`: uniform quantisation of every pixel (values in [0, 1]) to the most bits, 1..8, whose
  message fits; the message is one byte giving the bits, then the codes packed most significant
  bit first.
- `raw_jpeg`: JPEG (Pillow) at the highest quality of `JPEG_QUALITIES` whose message fits.

Whether a message fits is the caller's question (`fits(nbytes)`): these codecs know no link and
no clock. An empty message means nothing fits; the receiver then sees zeros.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from .slicing import pack_codes, unpack_codes

__all__ = [
    "JPEG_QUALITIES",
    "RAW_METHODS",
    "decode_raw",
    "encode_raw",
    "full_payload_bytes",
    "jpeg",
    "quant_bytes",
    "unjpeg",
]

RAW_METHODS = ("raw_quant", "raw_jpeg")
JPEG_QUALITIES = (95, 90, 85, 75, 65, 50, 40, 30, 20, 15, 10, 5, 1)
_MAX_QUANT_BITS = 8


def quant_bytes(pixels: int, bits: int) -> int:
    """Bytes of `pixels` codes of `bits` bits (without the one-byte header)."""
    return (pixels * bits + 7) // 8


def jpeg(img: np.ndarray, quality: int) -> bytes:
    """One (C, H, W) image with values in [0, 1] as a JPEG stream at `quality`."""
    from PIL import Image  # Pillow: imported when a raw-JPEG baseline runs

    arr = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def unjpeg(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode a received JPEG; one the errors made undecodable (or misshapen) gives zeros."""
    from PIL import Image

    c, h, w = shape
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
    except Exception:  # a corrupted stream can fail in many ways inside Pillow
        return np.zeros(shape, dtype=np.float32)
    arr = arr[None] if c == 1 else np.moveaxis(arr, -1, 0)
    return arr if arr.shape == shape else np.zeros(shape, dtype=np.float32)


def _encode_quant(img: np.ndarray, fits: Callable[[int], bool]) -> bytes:
    pixels = img.size
    bits = next((b for b in range(_MAX_QUANT_BITS, 0, -1) if fits(quant_bytes(pixels, b))), 0)
    if bits == 0:
        return b""
    levels = (1 << bits) - 1
    codes = np.clip(np.rint(img.reshape(-1) * levels), 0, levels).astype(np.uint32)
    return bytes([bits]) + pack_codes(codes[None], bits).tobytes()


def _encode_jpeg(img: np.ndarray, fits: Callable[[int], bool]) -> bytes:
    for quality in JPEG_QUALITIES:
        data = jpeg(img, quality)
        if fits(len(data)):
            return data
    return b""


def encode_raw(method: str, img: np.ndarray, fits: Callable[[int], bool]) -> bytes:
    """The message of `method` for one image: the best encoding whose size `fits`, or b""."""
    return _encode_quant(img, fits) if method == "raw_quant" else _encode_jpeg(img, fits)


def decode_raw(method: str, buf: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray | None:
    """A received message (uint8 array, bit errors and all) back to an image of `shape`; None
    where a quantised message's header names no valid bit count, or more bits than the message
    holds (a flipped header: the receiver keeps zeros)."""
    if method != "raw_quant":
        return unjpeg(buf.tobytes(), shape)
    bits = int(buf[0])
    pixels = int(np.prod(shape))
    if not 1 <= bits <= _MAX_QUANT_BITS or len(buf) - 1 < quant_bytes(pixels, bits):
        return None
    codes = unpack_codes(buf[1:], pixels, bits)
    return (codes / ((1 << bits) - 1)).reshape(shape)


def full_payload_bytes(method: str, imgs: np.ndarray) -> float:
    """What the method sends with no budget: 8-bit codes, or the mean JPEG at quality 95."""
    if method == "raw_quant":
        return float(quant_bytes(int(np.prod(imgs.shape[1:])), _MAX_QUANT_BITS))
    return float(np.mean([len(jpeg(im, JPEG_QUALITIES[0])) for im in imgs]))
