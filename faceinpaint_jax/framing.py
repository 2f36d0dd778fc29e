"""Framing a face in a real photo the way the training faces were framed, and pasting the fill back.

The training faces are CelebA's aligned crops (178×218) cut to their centre square and resized; on them
MTCNN's five landmarks sit at `TEMPLATE` (measured on the 300 sample faces 000001–000300: `python -m
faceinpaint_jax.framing --measure`). A photo's face is mapped onto that template by the least-squares
similarity (scale, rotation, shift: Umeyama 1991) of its landmarks, so a tilted head comes out upright
and a face of any size fills the crop as in training. Landmarks under the hole are unreliable (O-Net still
guesses them): they are left out of the fit while at least two remain; with fewer, the detector's box
places the crop (its mean position on the same faces is `TEMPLATE_BOX`), and a user's --face-box
overrides both. The crop goes through the network at the model's size and only the hole's pixels come
back, through the inverse transform at the photo's own resolution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

# MTCNN landmarks (left eye, right eye, nose, left / right mouth corner) as fractions of the training
# square, and the detector's box (x1, y1, x2, y2) likewise: means over sample faces 000001–000300 (299 found) in
# the 178×178 centre square of CelebA's 178×218 aligned crops (spread of the eyes ±2 px, mouth ±3 px).
# Fractions are of continuous coordinates (pixel i spans [i, i + 1)); detections are pixel indices.
TEMPLATE = (np.array([[69.95, 92.10], [109.04, 92.08], [88.91, 116.34], [71.87, 133.88],
                      [106.96, 133.76]]) + 0.5) / 178.0
TEMPLATE_BOX = (np.array([46.26, 46.53, 132.38, 162.61]) + 0.5) / 178.0
MIN_LANDMARKS = 2


def _index_matrix(linear: np.ndarray, shift: np.ndarray) -> np.ndarray:
  """The map x ↦ linear·x + shift between continuous coordinates, written between pixel indices (the
  convention of detections and of OpenCV's warps: pixel i's centre is i, continuous i + 0.5)."""
  return np.concatenate([linear, (linear @ np.full(2, 0.5) + shift - 0.5)[:, None]], axis=1)


@dataclasses.dataclass(frozen=True)
class Frame:
  """A square crop of a photo: `matrix` (2×3) maps photo pixel indices (x, y) to those of a
  `size`×`size` crop; `how` says what placed it ("landmarks", "landmarks (k of 5)", "box", "face box",
  "hole")."""
  matrix: np.ndarray
  size: int
  how: str

  @property
  def scale(self) -> float:
    return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

  def corners(self) -> np.ndarray:
    """The crop's four outer corners in photo pixel coordinates (for drawing and reports)."""
    inverse = invert(self.matrix)
    square = np.array([[0, 0], [self.size, 0], [self.size, self.size], [0, self.size]], np.float64) - 0.5
    return square @ inverse[:, :2].T + inverse[:, 2]

  def describe(self) -> str:
    corners = self.corners()
    center = corners.mean(axis=0)
    side = np.linalg.norm(corners[1] - corners[0])
    angle = np.degrees(np.arctan2(*(corners[1] - corners[0])[::-1]))
    return f"{side:.0f}px square at ({center[0]:.0f}, {center[1]:.0f}), {angle:+.1f}° ({self.how})"


def invert(matrix: np.ndarray) -> np.ndarray:
  linear = np.linalg.inv(matrix[:, :2])
  return np.concatenate([linear, -linear @ matrix[:, 2:]], axis=1)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """The 2×3 similarity (uniform scale, rotation, translation; no reflection) that maps `source` points
  (N, 2) closest to `target` in least squares (Umeyama 1991)."""
  mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
  s, t = source - mu_s, target - mu_t
  covariance = t.T @ s / len(source)
  u, singular, vt = np.linalg.svd(covariance)
  sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
  rotation = u @ sign @ vt
  scale = np.trace(np.diag(singular) @ sign) / (s ** 2).sum(axis=1).mean()
  linear = scale * rotation
  return np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1)


def frame_from_landmarks(landmarks: np.ndarray, size: int, usable: np.ndarray | None = None) -> Frame:
  """Crop placing the `usable` landmarks (all by default) where the training faces have theirs."""
  usable = np.ones(len(landmarks), bool) if usable is None else np.asarray(usable, bool)
  if usable.sum() < MIN_LANDMARKS:
    raise ValueError(f"{int(usable.sum())} usable landmarks; at least {MIN_LANDMARKS} are needed")
  how = "landmarks" if usable.all() else f"landmarks ({int(usable.sum())} of 5)"
  fit = similarity(landmarks[usable] + 0.5, TEMPLATE[usable] * size)
  return Frame(_index_matrix(fit[:, :2], fit[:, 2]), size, how)


def frame_from_box(box, size: int, how: str = "box") -> Frame:
  """Crop placing a face box (x1, y1, x2, y2) where the detector's box sits on the training faces
  (no rotation)."""
  x1, y1, x2, y2 = (float(v) + 0.5 for v in box)
  tx1, ty1, tx2, ty2 = TEMPLATE_BOX * size
  scale = np.sqrt(((tx2 - tx1) * (ty2 - ty1)) / max((x2 - x1) * (y2 - y1), 1e-6))
  center, target = np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.array([(tx1 + tx2) / 2, (ty1 + ty2) / 2])
  return Frame(_index_matrix(scale * np.eye(2), target - scale * center), size, how)


def frame_around(hole: np.ndarray, size: int, photo_shape: tuple[int, int]) -> Frame:
  """No face: a square crop centred on the hole's bounding box, twice its longer side (the training holes
  span up to half the image), never beyond the photo's shorter side, at least the hole itself."""
  ys, xs = np.nonzero(hole)
  x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # continuous edges
  longest = max(x2 - x1, y2 - y1)
  side = max(min(2 * longest, min(photo_shape)), longest)
  return centred_frame(np.array([(x1 + x2) / 2, (y1 + y2) / 2]), side, size, "hole")


def centred_frame(center, side: float, size: int, how: str) -> Frame:
  """An upright square of `side` photo pixels centred on `center` (continuous coordinates)."""
  scale = size / side
  return Frame(_index_matrix(scale * np.eye(2), size / 2 - scale * np.asarray(center, np.float64)), size, how)


def warp_to_crop(photo: np.ndarray, frame: Frame) -> np.ndarray:
  """The crop, (size, size, C) uint8. Shrinking is antialiased as the training faces were (PIL bicubic
  resize first, then a bilinear warp at about 1:1); outside the photo the border is replicated."""
  import cv2
  matrix = frame.matrix
  scale = frame.scale
  if scale < 0.9:  # shrink first so that the warp samples without aliasing
    h, w = photo.shape[:2]
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    photo = np.asarray(Image.fromarray(photo).resize((new_w, new_h), Image.Resampling.BICUBIC))
    back = np.diag([w / new_w, h / new_h])  # shrunk (x, y) → photo (x, y), pixel edges aligned
    shift = (back @ np.array([0.5, 0.5])) - 0.5
    matrix = np.concatenate([matrix[:, :2] @ back, (matrix[:, :2] @ shift + matrix[:, 2])[:, None]], axis=1)
  return cv2.warpAffine(photo, matrix.astype(np.float64), (frame.size, frame.size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)


def mask_to_crop(hole: np.ndarray, frame: Frame) -> np.ndarray:
  """A photo's hole (H, W) bool → the crop's hole (size, size) bool: every crop pixel any part of the
  hole touches (area-weighted coverage > 0), so the network is never shown a damaged pixel as known."""
  coverage = warp_to_crop((hole.astype(np.uint8) * 255)[..., None].repeat(3, axis=-1), frame)[..., 0]
  return coverage > 0


def crop_to_photo(crop: np.ndarray, frame: Frame, photo_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """The crop (size, size, C) warped back onto the photo's grid (bicubic) and the photo pixels the crop
  covers (bool (H, W))."""
  import cv2
  h, w = photo_shape
  back = cv2.warpAffine(crop, frame.matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)
  inside = cv2.warpAffine(np.ones(crop.shape[:2], np.uint8), frame.matrix, (w, h),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0) > 0
  return back, inside


def draw_frames(photo: np.ndarray, frames: list[Frame], hole: np.ndarray | None = None) -> np.ndarray:
  """The photo with each crop outlined (green; yellow where it came from the hole alone) and the hole
  tinted red: what --debug-crops writes."""
  from PIL import ImageDraw
  canvas = photo.copy()
  if hole is not None:
    canvas[hole] = (0.5 * canvas[hole] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
  image = Image.fromarray(canvas)
  draw = ImageDraw.Draw(image)
  width = max(1, round(min(photo.shape[:2]) / 150))
  for frame in frames:
    corners = [tuple(p) for p in frame.corners()]
    draw.line(corners + corners[:1], fill=(255, 220, 0) if frame.how == "hole" else (0, 255, 0), width=width)
  return np.asarray(image)


def measure_template(count: int = 300, cache_dir: str = "") -> dict:
  """Mean MTCNN landmarks and box over sample faces 000001…count, as fractions of the training square."""
  from faceinpaint_jax import assets
  from faceinpaint_jax.data.preprocess import decode_image
  from faceinpaint_jax.detector import MTCNN, load_mtcnn_variables
  detector = MTCNN(load_mtcnn_variables(cache_dir=cache_dir))
  faces = assets.sample_faces_dir(cache_dir)
  landmarks, boxes = [], []
  for i in range(1, count + 1):
    image = decode_image(str(faces / f"{i:06d}.jpg"))
    found = detector(image)
    if found:
      top = (image.shape[0] - image.shape[1]) // 2  # the centre square the pipeline cuts
      landmarks.append(found[0].landmarks - [0, top])
      boxes.append(found[0].box - [0, top, 0, top])
  side = 178.0
  return {"faces": len(landmarks), "of": count,
          "landmarks_px": np.round(np.mean(landmarks, axis=0), 2).tolist(),
          "landmarks_std_px": np.round(np.std(landmarks, axis=0), 2).tolist(),
          "box_px": np.round(np.mean(boxes, axis=0), 2).tolist(),
          "box_std_px": np.round(np.std(boxes, axis=0), 2).tolist(), "square_px": side}


if __name__ == "__main__":
  import argparse
  import json
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.framing",
                               description="measure TEMPLATE and TEMPLATE_BOX on the sample faces")
  ap.add_argument("--measure", type=int, default=300, help="how many sample faces (from 000001)")
  print(json.dumps(measure_template(ap.parse_args().measure)))
