"""Mask-free completion: the attentive module's last map A_N turned into a hole mask that covers the damage.

A_N is soft at the hole's border (the module runs on a pooled image and its maps are resized back), so a
plain threshold stops a pixel or two short of the border and leaves a rim of damage behind; stray
responses (a white collar, a highlight) give small blobs. `blind_mask` thresholds, closes small gaps,
grows the mask by a few pixels and drops connected components smaller than a minimum area. Sizes are in
pixels at the model's resolution; the defaults were measured with evaluate --blind (docs/EVALUATION.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class BlindMaskSettings:
  threshold: float = 0.5
  closing: int = 1  # radius of the closing (px at the model's size); 0 = none
  dilation: int = 1  # radius the mask grows by afterwards; 0 = none
  min_area: float = 0.004  # components smaller than this fraction of the image are dropped


def _disk(radius: int) -> np.ndarray:
  y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  return x * x + y * y <= radius * radius + radius  # a rounder disk than the strict circle at small radii


def blind_mask(attention: np.ndarray, settings: BlindMaskSettings = BlindMaskSettings()) -> np.ndarray:
  """(H, W) or (H, W, 1) attention map in [0, 1] → (H, W) bool hole mask."""
  attention = np.asarray(attention, np.float32)
  if attention.ndim == 3:
    attention = attention[..., 0]
  mask = attention > settings.threshold
  if settings.closing > 0:
    # Pad so that closing does not erode the mask where it touches the image border.
    r = settings.closing
    mask = ndimage.binary_closing(np.pad(mask, r, mode="edge"), structure=_disk(r))[r:-r, r:-r]
  if settings.dilation > 0:
    mask = ndimage.binary_dilation(mask, structure=_disk(settings.dilation))
  if settings.min_area > 0 and mask.any():
    labels, count = ndimage.label(mask)
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], areas >= settings.min_area * mask.size])
    mask = keep[labels]
  return mask
