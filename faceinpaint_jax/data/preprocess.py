"""Decoding and preprocessing: any image file → RGB uint8 → centred square → antialiased resize.

Value range: model inputs are float32 in [−1, 1] (uint8 v ↦ v / 127.5 − 1).
"""

from __future__ import annotations

import io
import logging
import threading

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)


class BadImageError(ValueError):
  """The file is not a decodable image."""


_warned_small: set[str] = set()
_warn_lock = threading.Lock()


def to_rgb(image: Image.Image) -> np.ndarray:
  """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F, …) → (H, W, 3) uint8 RGB."""
  image = ImageOps.exif_transpose(image) if hasattr(image, "getexif") else image
  mode = image.mode
  if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    # 16-bit and 32-bit greyscale: scale the actual range to 8 bits instead of clipping at 255.
    array = np.asarray(image, dtype=np.float64)
    if mode.startswith("I;16"):
      array = array / 257.0
    else:
      low, high = float(array.min()), float(array.max())
      array = (array - low) / max(high - low, 1e-12) * 255.0
    gray = np.clip(np.round(array), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
    # Composite on white rather than dropping alpha, so transparent pixels do not turn black.
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
  return np.asarray(image.convert("RGB"))


def decode_image(source) -> np.ndarray:
  """Path or bytes → (H, W, 3) uint8. Raises BadImageError for anything that is not a whole image."""
  try:
    with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
      image.load()  # forces a full decode: truncated files fail here, not later
      return to_rgb(image)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadImageError(f"{type(e).__name__}: {e}") from e


def center_square_resize(rgb: np.ndarray, size: int, name: str = "") -> np.ndarray:
  """Centre-crop to a square (178×218 aligned CelebA → 178×178) and resize to size×size, antialiased."""
  height, width = rgb.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = rgb[top:top + side, left:left + side]
  if side == size:
    return np.ascontiguousarray(square)
  if side < size:
    with _warn_lock:
      if name not in _warned_small:
        _warned_small.add(name)
        log.warning("%s is %dx%d, smaller than %d: upscaling", name or "an image", width, height, size)
  # PIL's resampling filters widen their support when shrinking: proper antialiasing.
  return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC,
                                                   reducing_gap=None))


def to_model_range(rgb_uint8: np.ndarray) -> np.ndarray:
  return rgb_uint8.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[−1, 1] float → uint8, rounding to nearest."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
