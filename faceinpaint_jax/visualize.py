"""Image grids for previews, training samples (Fig. 6) and comparisons (Fig. 7)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceinpaint_jax.data.preprocess import to_uint8


def to_rgb_uint8(panel: np.ndarray) -> np.ndarray:
  """(H, W, 1|3) float: 1-channel maps in [0, 1] are shown as grey, images in [−1, 1] as colour."""
  panel = np.asarray(panel, np.float32)
  if panel.shape[-1] == 1:
    return np.repeat(to_uint8(panel * 2.0 - 1.0), 3, axis=-1)
  return to_uint8(panel)


def resize_panel(panel: np.ndarray, size: int) -> np.ndarray:
  if panel.shape[0] == size and panel.shape[1] == size:
    return panel
  return np.asarray(Image.fromarray(panel).resize((size, size), Image.Resampling.NEAREST))


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
  """rows of panels (each (h, w, 1|3) float) → one uint8 RGB grid; panels are resized to the first's size."""
  size = rows[0][0].shape[0]
  cols = max(len(r) for r in rows)
  grid = np.full((len(rows) * (size + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, panel in enumerate(row):
      y, x = pad + i * (size + pad), pad + j * (size + pad)
      grid[y:y + size, x:x + size] = resize_panel(to_rgb_uint8(panel), size)
  return grid


def save_png(array: np.ndarray, path) -> None:
  Image.fromarray(array).save(path)
