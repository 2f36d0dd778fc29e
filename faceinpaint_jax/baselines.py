"""Classical inpainting baselines, run on exactly the masks the model sees: mean colour, OpenCV Telea and
Navier–Stokes. Inputs and outputs are uint8 RGB (H, W, 3); masks (H, W, 1), 1 in the hole."""

from __future__ import annotations

import numpy as np

INPAINT_RADIUS = 3  # OpenCV's customary radius, in pixels


def mean_fill(image: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
  known = hole_mask[..., 0] < 0.5
  mean = image[known].mean(axis=0) if known.any() else np.full(3, 127.5)
  out = image.copy()
  out[~known] = np.round(mean).astype(np.uint8)
  return out


def _opencv(image, hole_mask, flag):
  import cv2

  mask = (hole_mask[..., 0] > 0.5).astype(np.uint8) * 255
  bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
  return cv2.cvtColor(cv2.inpaint(bgr, mask, INPAINT_RADIUS, flag), cv2.COLOR_BGR2RGB)


def telea(image: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
  import cv2
  return _opencv(image, hole_mask, cv2.INPAINT_TELEA)


def navier_stokes(image: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
  import cv2
  return _opencv(image, hole_mask, cv2.INPAINT_NS)


BASELINES = {"mean_fill": mean_fill, "opencv_telea": telea, "opencv_navier_stokes": navier_stokes}
