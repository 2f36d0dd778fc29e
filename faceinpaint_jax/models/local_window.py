"""The local discriminator's window: a fixed-size crop that contains the hole (§3.3).

The same offset rule runs in the data pipeline (numpy) and inside jitted steps (jax.numpy),
so it is written once against an array namespace `xp`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np


def hole_bounding_box(hole_mask, xp=jnp):
  """(B, H, W, 1) mask → per-example (top, left, bottom, right), bottom/right exclusive.

  An empty mask yields the whole image, so the window falls back to the centre.
  """
  height, width = hole_mask.shape[1:3]
  rows = xp.any(hole_mask[..., 0] > 0.5, axis=2)  # (B, H)
  cols = xp.any(hole_mask[..., 0] > 0.5, axis=1)  # (B, W)
  top = xp.argmax(rows, axis=1)
  bottom = height - xp.argmax(rows[:, ::-1], axis=1)
  left = xp.argmax(cols, axis=1)
  right = width - xp.argmax(cols[:, ::-1], axis=1)
  empty = ~xp.any(rows, axis=1)
  top = xp.where(empty, 0, top)
  left = xp.where(empty, 0, left)
  bottom = xp.where(empty, height, bottom)
  right = xp.where(empty, width, right)
  return top, left, bottom, right


def local_window_offsets(hole_mask, window: int, xp=jnp):
  """(B, 2) int32 (y, x) offsets of a `window`² crop centred on the hole, clipped to the image.

  Contains the whole hole whenever the hole's bounding box fits in the window.
  """
  height, width = hole_mask.shape[1:3]
  if window > min(height, width):
    raise ValueError(f"local window {window} is larger than the image {height}×{width}")
  top, left, bottom, right = hole_bounding_box(hole_mask, xp)
  y = xp.clip((top + bottom) // 2 - window // 2, 0, height - window)
  x = xp.clip((left + right) // 2 - window // 2, 0, width - window)
  return xp.stack([y, x], axis=-1).astype(xp.int32)


def crop_local_window(images, offsets, window: int):
  """Per-example dynamic crop, jit-friendly: (B, H, W, C), (B, 2) → (B, window, window, C)."""
  chex.assert_rank(images, 4)
  chex.assert_shape(offsets, (images.shape[0], 2))
  channels = images.shape[-1]

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (window, window, channels))

  return jax.vmap(crop)(images, jnp.asarray(offsets))


def crop_local_window_np(images: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
  return np.stack([img[y:y + window, x:x + window] for img, (y, x) in zip(images, offsets)])
