"""Hole masks (1 in the hole, (H, W, 1) float32) and the damaged input of §3.4.1.

Training holes are one random rectangle per image (§3.3); evaluation protocols follow §4.1/§4.4;
free-form brush strokes follow DeepFill v2's generator. Sizes are given at 128×128 and scale with the image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

PROTOCOLS = ("center", "fixed_size_random_position", "growing")
REFERENCE_SIZE = 128
GROWING_SIZES = (16, 32, 48, 64, 80, 96)  # at 128×128


def scaled(px_at_128: float, size: int) -> int:
  return max(1, int(round(px_at_128 * size / REFERENCE_SIZE)))


def rectangle_mask(size: int, top: int, left: int, height: int, width: int) -> np.ndarray:
  mask = np.zeros((size, size, 1), np.float32)
  mask[top:top + height, left:left + width] = 1.0
  return mask


def random_rectangle(rng: np.random.Generator, size: int, min_side: int, max_side: int) -> np.ndarray:
  """One rectangle, each side uniform in [min_side, max_side], placed uniformly inside the image."""
  height, width = rng.integers(min_side, max_side + 1, size=2)
  top = rng.integers(0, size - height + 1)
  left = rng.integers(0, size - width + 1)
  return rectangle_mask(size, int(top), int(left), int(height), int(width))


def centered_square(size: int, side: int) -> np.ndarray:
  top = (size - side) // 2
  return rectangle_mask(size, top, top, side, side)


def free_form(rng: np.random.Generator, size: int, max_strokes: int = 4, max_vertices: int = 12,
              max_width_fraction: float = 0.15) -> np.ndarray:
  """DeepFill v2-style brush strokes: random polylines of random width with round joints."""
  canvas = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  max_width = max(2, int(size * max_width_fraction))
  max_length = size / 4
  for _ in range(int(rng.integers(1, max_strokes + 1))):
    x, y = rng.integers(0, size, size=2)
    width = int(rng.integers(max(1, max_width // 3), max_width + 1))
    for _ in range(int(rng.integers(4, max_vertices + 1))):
      angle = rng.uniform(0, 2 * math.pi)
      length = rng.uniform(max_length / 4, max_length)
      nx = int(np.clip(x + length * math.cos(angle), 0, size - 1))
      ny = int(np.clip(y + length * math.sin(angle), 0, size - 1))
      draw.line([(int(x), int(y)), (nx, ny)], fill=255, width=width)
      draw.ellipse([nx - width // 2, ny - width // 2, nx + width // 2, ny + width // 2], fill=255)
      x, y = nx, ny
  mask = (np.asarray(canvas) > 127).astype(np.float32)[..., None]
  if rng.random() < 0.5:
    mask = mask[:, ::-1]
  return np.ascontiguousarray(mask)


def training_mask(rng: np.random.Generator, size: int, data_config) -> np.ndarray:
  if data_config.mask_kind == "free_form":
    return free_form(rng, size)
  min_side = max(1, int(round(data_config.hole_min_fraction * size)))
  max_side = max(min_side, int(round(data_config.hole_max_fraction * size)))
  return random_rectangle(rng, size, min_side, max_side)


def protocol_mask(protocol: str, rng: np.random.Generator, size: int, index: int = 0) -> np.ndarray:
  """Evaluation masks. `growing` cycles through GROWING_SIZES by example index."""
  if protocol == "center":
    return centered_square(size, scaled(64, size))
  if protocol == "fixed_size_random_position":
    side = scaled(64, size)
    return random_rectangle(rng, size, side, side)
  if protocol == "growing":
    return centered_square(size, scaled(GROWING_SIZES[index % len(GROWING_SIZES)], size))
  raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def load_mask_png(path, size: int | None = None) -> np.ndarray:
  """A mask image, white (> 127) = hole, as (H, W, 1) float32; resized with nearest if `size` is given."""
  with Image.open(path) as image:
    gray = image.convert("L")
    if size is not None and gray.size != (size, size):
      gray = gray.resize((size, size), Image.Resampling.NEAREST)
    return (np.asarray(gray) > 127).astype(np.float32)[..., None]


HOLE_FILLS = ("white", "mean", "color", "noise", "patch")
HOLE_FILL_CHOICES = HOLE_FILLS + ("mixture",)


def choose_fill(fill: str, rng: np.random.Generator | None, weights=()) -> str:
  """The fill one example gets: `fill` itself, or for "mixture" one of HOLE_FILLS, drawn with `weights`
  (one per HOLE_FILLS entry, relative; empty: uniformly)."""
  if fill != "mixture":
    return fill
  if not len(weights):  # the uniform draw keeps the batches of runs made before weights existed
    return HOLE_FILLS[int(rng.integers(len(HOLE_FILLS)))]
  weights = np.asarray(weights, np.float64)
  return HOLE_FILLS[int(rng.choice(len(HOLE_FILLS), p=weights / weights.sum()))]


def damage_given_hole(image: np.ndarray, hole_mask: np.ndarray, hole_fill: str) -> np.ndarray:
  """A hole given by a user (inpaint --mask, evaluate --masks) damaged the way the model was trained:
  its own fill, a solid mean colour for fills that need another image or a random colour, and white
  for a mixture (white is one of its kinds, and the paper's)."""
  fill = {"mixture": "white", "color": "mean", "patch": "mean"}.get(hole_fill, hole_fill)
  return damage(image, hole_mask, fill, np.random.default_rng(0))


def damage(image: np.ndarray, hole_mask: np.ndarray, fill: str = "white", rng: np.random.Generator | None = None,
           donor: np.ndarray | None = None) -> np.ndarray:
  """Eq. 4: the hole of `image` (H, W, C in [−1, 1]) replaced by
  white (§3.4.1) | mean (the known pixels' mean colour) | color (one random solid colour) |
  noise (uniform per pixel and channel) | patch (`donor`'s pixels at the same place; the pipeline's
  donor is another image, shifted: something pasted over). `fill` must be one kind (choose_fill resolves "mixture"); color and noise draw from `rng`.
  """
  if fill == "white":
    value = np.ones((1, 1, image.shape[-1]), image.dtype)
  elif fill == "mean":
    known = 1.0 - hole_mask
    value = ((image * known).sum(axis=(0, 1)) / max(known.sum(), 1.0))[None, None].astype(image.dtype)
  elif fill == "color":
    value = rng.uniform(-1.0, 1.0, (1, 1, image.shape[-1])).astype(image.dtype)
  elif fill == "noise":
    value = rng.uniform(-1.0, 1.0, image.shape).astype(image.dtype)
  elif fill == "patch":
    if donor is None or donor.shape != image.shape:
      raise ValueError("the patch fill needs a donor image of the same shape")
    value = donor.astype(image.dtype)
  else:
    raise ValueError(f"unknown hole fill {fill!r}; choose one of {', '.join(HOLE_FILLS)}")
  return np.where(hole_mask > 0.5, value, image).astype(image.dtype)
