"""MTCNN (Zhang et al. 2016) in Flax: P-, R- and O-Net and the cascade that gives face boxes and five landmarks.

The networks and every step of the cascade follow facenet-pytorch 2.6.0's `detect_face`, whose weights we
load (detector/weights.py): the image pyramid with area resampling, P-Net proposals with their 0.5 / 0.7
non-maximum suppression, squared boxes cropped (clipped at the image border) and resampled to 24² for R-Net
and 48² for O-Net, box regression after each stage and the final "Min"-overlap suppression. Landmarks come
in CelebA's order: left eye, right eye, nose, left mouth corner, right mouth corner (left = smaller x).

The networks run under `jax.jit`; the cascade's bookkeeping (thresholds, NMS, crops) is NumPy, as it is
data-dependent in size.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Normalisation the weights were trained with: (v − 127.5) / 128.
_MEAN, _SCALE = 127.5, 0.0078125


class PReLU(nn.Module):
  """max(0, x) + a · min(0, x) with one learned slope a per channel."""

  @nn.compact
  def __call__(self, x):
    slope = self.param("weight", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, slope * x)


def max_pool_ceil(x, window: int, stride: int):
  """PyTorch's MaxPool2d(window, stride, ceil_mode=True) on NHWC: partial windows at the bottom/right
  edge are kept (padded with −∞), unless they would start past the input."""

  def out_size(n):
    size = math.ceil((n - window) / stride) + 1
    return size - 1 if (size - 1) * stride >= n else size

  h, w = x.shape[1:3]
  pad_h = (out_size(h) - 1) * stride + window - h
  pad_w = (out_size(w) - 1) * stride + window - w
  x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def _flatten_like_torch(x):
  # facenet-pytorch flattens (N, W, H, C) — its weights came from a Caffe model trained on transposed
  # images — so the dense layers' inputs must be laid out the same way.
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


class PNet(nn.Module):
  """Proposal net: fully convolutional, 12² receptive field, stride 2. → (box regression (…, 4),
  face probability (…, 2))."""

  @nn.compact
  def __call__(self, x):
    x = PReLU(name="prelu1")(nn.Conv(10, (3, 3), padding="VALID", name="conv1")(x))
    x = max_pool_ceil(x, 2, 2)
    x = PReLU(name="prelu2")(nn.Conv(16, (3, 3), padding="VALID", name="conv2")(x))
    x = PReLU(name="prelu3")(nn.Conv(32, (3, 3), padding="VALID", name="conv3")(x))
    probs = jax.nn.softmax(nn.Conv(2, (1, 1), name="conv4_1")(x), axis=-1)
    return nn.Conv(4, (1, 1), name="conv4_2")(x), probs


class RNet(nn.Module):
  """Refinement net on 24² crops. → (box regression (N, 4), face probability (N, 2))."""

  @nn.compact
  def __call__(self, x):
    chex.assert_shape(x, (None, 24, 24, 3))
    x = max_pool_ceil(PReLU(name="prelu1")(nn.Conv(28, (3, 3), padding="VALID", name="conv1")(x)), 3, 2)
    x = max_pool_ceil(PReLU(name="prelu2")(nn.Conv(48, (3, 3), padding="VALID", name="conv2")(x)), 3, 2)
    x = PReLU(name="prelu3")(nn.Conv(64, (2, 2), padding="VALID", name="conv3")(x))
    x = PReLU(name="prelu4")(nn.Dense(128, name="dense4")(_flatten_like_torch(x)))
    probs = jax.nn.softmax(nn.Dense(2, name="dense5_1")(x), axis=-1)
    return nn.Dense(4, name="dense5_2")(x), probs


class ONet(nn.Module):
  """Output net on 48² crops. → (box regression (N, 4), landmarks (N, 10: x1…x5, y1…y5 relative to the
  box), face probability (N, 2))."""

  @nn.compact
  def __call__(self, x):
    chex.assert_shape(x, (None, 48, 48, 3))
    x = max_pool_ceil(PReLU(name="prelu1")(nn.Conv(32, (3, 3), padding="VALID", name="conv1")(x)), 3, 2)
    x = max_pool_ceil(PReLU(name="prelu2")(nn.Conv(64, (3, 3), padding="VALID", name="conv2")(x)), 3, 2)
    x = max_pool_ceil(PReLU(name="prelu3")(nn.Conv(64, (3, 3), padding="VALID", name="conv3")(x)), 2, 2)
    x = PReLU(name="prelu4")(nn.Conv(128, (2, 2), padding="VALID", name="conv4")(x))
    x = PReLU(name="prelu5")(nn.Dense(256, name="dense5")(_flatten_like_torch(x)))
    probs = jax.nn.softmax(nn.Dense(2, name="dense6_1")(x), axis=-1)
    return nn.Dense(4, name="dense6_2")(x), nn.Dense(10, name="dense6_3")(x), probs


@dataclasses.dataclass(frozen=True)
class Face:
  """One detection in photo pixel coordinates: box (x1, y1, x2, y2), probability, landmarks (5, 2) as
  (x, y) in CelebA's order (left eye, right eye, nose, left mouth corner, right mouth corner)."""
  box: np.ndarray
  score: float
  landmarks: np.ndarray

  @property
  def size(self) -> float:
    return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """(H, W, C) float → (height, width, C) by PyTorch's `interpolate(mode="area")` (adaptive average
  pooling: output cell i averages input rows ⌊i·H/h⌋ … ⌈(i+1)·H/h⌉ − 1)."""

  def weights(n_in, n_out):
    matrix = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
      start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
      matrix[i, start:end] = 1.0 / (end - start)
    return matrix

  return np.einsum("ih,hwc,jw->ijc", weights(image.shape[0], height), image.astype(np.float32),
                   weights(image.shape[1], width), optimize=True)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
  """Greedy non-maximum suppression; indices kept, highest score first.

  "union": IoU with areas (x2 − x1)(y2 − y1), as torchvision's `nms` (the P- and R-Net stages);
  "min": overlap over the smaller box, with the +1 pixel areas of the original MTCNN (the last stage).
  """
  if len(boxes) == 0:
    return np.zeros(0, np.int64)
  plus = 1.0 if method == "min" else 0.0
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  area = (x2 - x1 + plus) * (y2 - y1 + plus)
  order = np.argsort(-scores, kind="stable")
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(i)
    w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
    h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
    inter = w * h
    overlap = inter / (np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter)
    order = rest[overlap <= threshold]
  return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
  boxes = boxes.copy()
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  side = np.maximum(w, h)
  boxes[:, 0] += w * 0.5 - side * 0.5
  boxes[:, 1] += h * 0.5 - side * 0.5
  boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
  return boxes


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  boxes = boxes.copy()
  w = boxes[:, 2] - boxes[:, 0] + 1
  h = boxes[:, 3] - boxes[:, 1] + 1
  boxes[:, :4] += offsets * np.stack([w, h, w, h], axis=1)
  return boxes


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Each box truncated to whole pixels and clipped to the image, resampled to size² and normalised;
  also the indices of the boxes that had pixels left."""
  h, w = image.shape[:2]
  whole = np.trunc(boxes[:, :4]).astype(np.int64)
  x, y = np.maximum(whole[:, 0], 1), np.maximum(whole[:, 1], 1)
  ex, ey = np.minimum(whole[:, 2], w), np.minimum(whole[:, 3], h)
  kept, crops = [], []
  for k in range(len(boxes)):
    if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
      crops.append(area_resize(image[y[k] - 1:ey[k], x[k] - 1:ex[k]], size, size))
      kept.append(k)
  crops = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.float32)
  return (crops - _MEAN) * _SCALE, np.asarray(kept, np.int64)


def _bucket(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()  # pad batches to powers of two: few compilations


class MTCNN:
  """`MTCNN(variables)(rgb_uint8)` → list of `Face`, most probable first.

  `variables` = {"pnet": …, "rnet": …, "onet": …} Flax variables (detector.weights.load_mtcnn_variables).
  Defaults are facenet-pytorch's: faces of at least 20 pixels, thresholds (0.6, 0.7, 0.7), pyramid
  factor 0.709.
  """

  def __init__(self, variables: dict, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7),
               factor: float = 0.709):
    self.variables = variables
    self.min_face_size = min_face_size
    self.thresholds = tuple(thresholds)
    self.factor = factor
    self._pnet = jax.jit(PNet().apply)
    self._rnet = jax.jit(RNet().apply)
    self._onet = jax.jit(ONet().apply)

  def _batched(self, net, variables, crops):
    n = len(crops)
    padded = np.zeros((_bucket(n), *crops.shape[1:]), np.float32)
    padded[:n] = crops
    return [np.asarray(o)[:n] for o in net(variables, padded)]

  def proposals(self, image: np.ndarray) -> np.ndarray:
    """Stage 1: P-Net over the image pyramid → (N, 5) squared boxes with scores."""
    h, w = image.shape[:2]
    m = 12.0 / self.min_face_size
    scales, minl = [], min(h, w) * m
    scale = m
    while minl >= 12:
      scales.append(scale)
      scale *= self.factor
      minl *= self.factor
    candidates = []
    for scale in scales:
      level = (area_resize(image, int(h * scale + 1), int(w * scale + 1)) - _MEAN) * _SCALE
      regression, probs = (np.asarray(o)[0] for o in self._pnet(self.variables["pnet"], level[None]))
      rows, cols = np.nonzero(probs[..., 1] >= self.thresholds[0])
      cells = np.stack([cols, rows], axis=1).astype(np.float32)
      boxes = np.concatenate([np.floor((2 * cells + 1) / scale), np.floor((2 * cells + 12) / scale),
                              probs[rows, cols, 1][:, None], regression[rows, cols]], axis=1)
      candidates.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
    boxes = np.concatenate(candidates) if candidates else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    refined = np.stack([boxes[:, 0] + boxes[:, 5] * w_, boxes[:, 1] + boxes[:, 6] * h_,
                        boxes[:, 2] + boxes[:, 7] * w_, boxes[:, 3] + boxes[:, 8] * h_, boxes[:, 4]], axis=1)
    return _square(refined)

  def __call__(self, rgb: np.ndarray) -> list[Face]:
    chex.assert_rank(rgb, 3)
    image = np.asarray(rgb, np.float32)
    boxes = self.proposals(image)
    if len(boxes):  # stage 2: R-Net
      crops, kept = _crops(image, boxes, 24)
      boxes = boxes[kept]
      regression, probs = self._batched(self._rnet, self.variables["rnet"], crops)
      passed = probs[:, 1] > self.thresholds[1]
      boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
      regression = regression[passed]
      pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
      boxes = _square(_regress(boxes[pick], regression[pick]))
    if not len(boxes):
      return []
    crops, kept = _crops(image, boxes, 48)  # stage 3: O-Net
    boxes = boxes[kept]
    regression, points, probs = self._batched(self._onet, self.variables["onet"], crops)
    passed = probs[:, 1] > self.thresholds[2]
    boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
    regression, points = regression[passed], points[passed]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    landmarks = np.stack([w[:, None] * points[:, :5] + boxes[:, 0:1] - 1,
                          h[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], axis=-1)
    boxes = _regress(boxes, regression)
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7, method="min")
    return [Face(box=boxes[i, :4].astype(np.float64), score=float(boxes[i, 4]),
                 landmarks=landmarks[i].astype(np.float64)) for i in pick]
