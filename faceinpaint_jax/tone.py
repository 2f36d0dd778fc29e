"""Old photos: grey, sepia, faded, grainy. The fill follows the photo's own tone and grain.

The network was trained on colour faces and fills a grey photo's hole with skin tones. When a photo's
known pixels are monochrome — every colour a function of its brightness, as in grey and toned (sepia,
cyanotype) prints — the fill keeps its own brightness and takes its colour from the photo's tone curve
(mean RGB of the known pixels at each brightness), so a grey photo gets a grey fill and a sepia photo a
sepia one. The network itself is shown such a photo as plain grey (`network_view`): toned colours are
outside what it was trained on, grey is not (measured in docs/REAL_PHOTOS.md). Where the photo is
grainier than the fill, grain of the missing strength is added.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# ITU-R BT.601 luma and chroma (YCbCr, levels 0–255).
_LUMA = np.array([0.299, 0.587, 0.114])
_CB = np.array([-0.168736, -0.331264, 0.5])
_CR = np.array([0.5, -0.418688, -0.081312])
# Sepia: the common sepia matrix's hue (its response to grey), scaled to keep each pixel's brightness —
# the matrix itself also brightens by 1.22×, which alone would cost 1.7 dB of PSNR on any completion.
_SEPIA_MATRIX = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
_SEPIA_TONE = _SEPIA_MATRIX.sum(axis=1) / (_LUMA @ _SEPIA_MATRIX.sum(axis=1))
TONES = ("grey", "sepia")
MONOCHROME_RMS = 4.0  # levels: how far a photo's colours may stray from its tone curve and still count
_BINS = 32


def luma(rgb: np.ndarray) -> np.ndarray:
  return np.asarray(rgb, np.float64) @ _LUMA


def chroma(rgb: np.ndarray) -> np.ndarray:
  """Per-pixel chroma √(Cb² + Cr²) in levels (0 for grey)."""
  rgb = np.asarray(rgb, np.float64)
  return np.hypot(rgb @ _CB, rgb @ _CR)


def apply_tone(rgb_uint8: np.ndarray, tone: str) -> np.ndarray:
  """A colour image as a grey or sepia print, uint8."""
  y = luma(rgb_uint8)
  if tone == "grey":
    out = np.repeat(y[..., None], 3, axis=-1)
  elif tone == "sepia":
    out = y[..., None] * _SEPIA_TONE
  else:
    raise ValueError(f"unknown tone {tone!r}; choose one of {', '.join(TONES)}")
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def tone_curve(rgb: np.ndarray, known: np.ndarray):
  """(bin centres of luma, mean RGB per bin, RMS distance of the known pixels from the curve)."""
  pixels = np.asarray(rgb, np.float64)[known]
  y = pixels @ _LUMA
  bins = np.clip((y / 256 * _BINS).astype(int), 0, _BINS - 1)
  counts = np.bincount(bins, minlength=_BINS)
  filled = counts > 0
  means = np.stack([np.bincount(bins, pixels[:, c], minlength=_BINS) for c in range(3)], axis=1)
  means = means[filled] / counts[filled, None]
  centres = np.stack([np.bincount(bins, y, minlength=_BINS)[filled] / counts[filled]], axis=1)[:, 0]
  predicted = np.stack([np.interp(y, centres, means[:, c]) for c in range(3)], axis=1)
  rms = float(np.sqrt(np.mean((pixels - predicted) ** 2)))
  return centres, means, rms


def is_monochrome(rgb: np.ndarray, known: np.ndarray) -> bool:
  """Whether the known pixels' colours are a function of their brightness (a grey or toned print)."""
  known = np.asarray(known, bool)
  return bool(known.any()) and tone_curve(rgb, known)[2] <= MONOCHROME_RMS


def network_view(rgb_uint8: np.ndarray, known: np.ndarray) -> np.ndarray:
  """What the network is shown: a monochrome photo as plain grey (its brightness), which it completes as
  well as colour faces, where a toned print (sepia) would be out of its training colours; the fill is
  toned back by `follow_tone`. Colour photos unchanged."""
  return apply_tone(rgb_uint8, "grey") if is_monochrome(rgb_uint8, known) else rgb_uint8


def _grain(grey: np.ndarray, region: np.ndarray) -> float:
  """Strength of pixel-scale noise in `region`: std of the image minus its 3×3 median."""
  residual = grey - ndimage.median_filter(grey, size=3)
  return float(np.std(residual[region])) if region.any() else 0.0


def follow_tone(result: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
  """`result` (H, W, 3) uint8 with its hole filled; if the known pixels are monochrome, the hole's pixels
  recoloured through their tone curve and given the grain they lack. Colour photos come back unchanged."""
  hole = np.asarray(hole, bool)
  if hole.ndim == 3:
    hole = hole[..., 0]
  known = ~hole
  if not known.any() or not hole.any():
    return result
  centres, means, rms = tone_curve(result, known)
  if rms > MONOCHROME_RMS:
    return result
  out = np.asarray(result, np.float64).copy()
  y = luma(out)
  # Grain measured in a ring of known pixels around the hole, so that a photo's smooth background does not
  # dilute it.
  ring = ndimage.binary_dilation(hole, iterations=max(2, int(0.1 * np.sqrt(hole.sum())))) & known
  missing = _grain(y, ring) ** 2 - _grain(y, hole) ** 2
  if missing > 1.0:
    y = y + np.where(hole, np.random.default_rng(seed).normal(0.0, np.sqrt(missing), y.shape), 0.0)
  # Each channel as a ratio to brightness along the curve: brightness is kept exactly, and fills darker or
  # brighter than any known pixel keep the nearest ratio instead of being clipped to its level.
  ratios = means / np.maximum(centres, 1.0)[:, None]
  recoloured = y[..., None] * np.stack([np.interp(y, centres, ratios[:, c]) for c in range(3)], axis=-1)
  out[hole] = recoloured[hole]
  return np.clip(np.round(out), 0, 255).astype(np.uint8)
