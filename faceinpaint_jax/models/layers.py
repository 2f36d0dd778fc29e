"""Small building blocks shared by the generator and the discriminators."""

import functools
import math
from typing import Any, Sequence

import chex
import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

LEAKY_SLOPE = 0.2


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
  # momentum 0.9 / eps 1e-5 match the TF-1 defaults the paper's code base used.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


NORMS = ("batch", "group", "none")


def norm_layer(kind: str, features: int, train: bool, dtype: Dtype, name: str | None = None):
  """The generator's normalisation by name: BatchNorm (the paper's), GroupNorm, or none (identity).

  GroupNorm has no running statistics, so train and eval mode compute the same function.
  """
  if kind == "batch":
    return batch_norm(train, dtype, name)
  if kind == "group":
    return nn.GroupNorm(num_groups=math.gcd(8, features), epsilon=1e-5, dtype=dtype, name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown normalisation {kind!r}; choose one of {NORMS}")


def _same_transpose_padding(kernel_size: int, stride: int) -> int:
  """Leading zero-padding of the lhs-dilated form of a 'SAME' transposed conv (as `lax.conv_transpose`)."""
  return kernel_size - 1 if stride > kernel_size - 1 else -(-(kernel_size + stride - 2) // 2)


class SubpixelConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, kernel_size, strides, padding="SAME", use_bias=False)`, exactly.

  Same parameter (name, shape, initialiser), same output; computed as one stride-1 convolution per
  output phase (the taps of the kernel that land on that phase) interleaved depth-to-space, instead
  of a convolution over a zero-dilated input. XLA:CPU runs the kernel gradient of the dilated form
  through a naive loop (about 3 s of a batch-8 paper-config step for the two up-sampling stages);
  the phase form is ordinary convolutions in both directions and does no multiply-by-zero work.
  """
  features: int
  kernel_size: Sequence[int] = (4, 4)
  strides: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    kh, kw = self.kernel_size
    s = self.strides
    if min(kh, kw) < s:
      raise ValueError(f"kernel {self.kernel_size} smaller than stride {s} leaves output phases empty")
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, channels, self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)

    def phase_taps(size):
      # Output row s·m + r of the dilated form reads kernel taps t with (r + t − pad) ≡ 0 (mod s),
      # at input rows m + (r + t − pad)/s: every s-th tap, read by a small stride-1 conv.
      pad = _same_transpose_padding(size, s)
      taps = [[t for t in range(size) if (r + t - pad) % s == 0] for r in range(s)]
      return [(ts, (r + ts[0] - pad) // s) for r, ts in enumerate(taps)]

    phases = []
    for rows, row_offset in phase_taps(kh):
      row = []
      for cols, col_offset in phase_taps(kw):
        sub = kernel[rows[0]::s, cols[0]::s]
        padding = ((-row_offset, row_offset + len(rows) - 1), (-col_offset, col_offset + len(cols) - 1))
        row.append(jax.lax.conv_general_dilated(
            x, sub, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
      phases.append(jnp.stack(row, axis=3))
    y = jnp.stack(phases, axis=2)  # (B, H, s, W, s, C): row phase, then column phase
    return y.reshape(batch, height * s, width * s, self.features)


def strided_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None,
                 preferred_element_type=None):
  """`lax.conv_general_dilated` for flax's `nn.Conv(conv_general_dilated=...)` hook.

  A strided NHWC convolution whose input is at most 8×8 is computed as space-to-depth followed by a
  stride-1 convolution (the same sums, kernel taps regrouped by phase). For such small inputs
  XLA:CPU differentiates the strided form through a naive loop: the last 5×5/2 stage of the
  discriminators (8×8×512 → 4×4×512, batch 8) takes 1.5 s forward + backward as written and 0.17 s
  in this form. Everything else — larger inputs, where the direct form is faster, dilations,
  groups, other backends — goes straight to `lax.conv_general_dilated`.
  """
  direct = functools.partial(
      jax.lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  stride = window_strides[0] if len(set(window_strides)) == 1 else 1
  if (jax.default_backend() != "cpu" or lhs.ndim != 4 or stride == 1 or max(lhs.shape[1:3]) > 8
      or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ())) or feature_group_count != 1
      or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != nhwc):
    return direct()
  batch, height, width, channels = lhs.shape
  kh, kw, _, features = rhs.shape
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads((height, width), (kh, kw), window_strides, padding)
  (top, bottom), (left, right) = padding
  out_h = (height + top + bottom - kh) // stride + 1
  out_w = (width + left + right - kw) // stride + 1
  # Taps per phase, and the padded extent that covers every output's receptive field in whole
  # stride × stride cells; taps past the kernel's edge are zero.
  taps_h, taps_w = -(-kh // stride), -(-kw // stride)
  full_h, full_w = stride * (out_h + taps_h - 1), stride * (out_w + taps_w - 1)
  x = jnp.pad(lhs, ((0, 0), (top, max(0, full_h - height - top)),
                    (left, max(0, full_w - width - left)), (0, 0)))[:, :full_h, :full_w]
  x = einops.rearrange(x, "b (h p) (w q) c -> b h w (p q c)", p=stride, q=stride)
  kernel = jnp.pad(rhs, ((0, stride * taps_h - kh), (0, stride * taps_w - kw), (0, 0), (0, 0)))
  kernel = einops.rearrange(kernel, "(h p) (w q) i o -> h w (p q i) o", p=stride, q=stride)
  out = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=nhwc,
                                     precision=precision,
                                     preferred_element_type=preferred_element_type)
  chex.assert_shape(out, (batch, out_h, out_w, features))
  return out


class ConvBNAct(nn.Module):
  """conv → normalisation (BatchNorm in the paper) → LeakyReLU(0.2): every encoder/decoder stage."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int = 1
  dilation: int = 1
  norm: str = "batch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    # A bias before a normalisation is cancelled by its mean subtraction; without one it is needed.
    x = nn.Conv(self.features, tuple(self.kernel_size), strides=self.strides,
                kernel_dilation=self.dilation, padding="SAME", use_bias=self.norm == "none",
                dtype=self.dtype)(x)
    x = norm_layer(self.norm, self.features, train, self.dtype)(x)
    return leaky_relu(x)


class ResNetBlock(nn.Module):
  """Fig. 2: conv–BN–LeakyReLU–conv–BN plus identity skip (the normalisation selectable)."""
  features: int
  norm: str = "batch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda: nn.Conv(self.features, (3, 3), padding="SAME", use_bias=self.norm == "none",
                           dtype=self.dtype)
    y = leaky_relu(norm_layer(self.norm, self.features, train, self.dtype)(conv()(x)))
    y = norm_layer(self.norm, self.features, train, self.dtype)(conv()(y))
    return x + y
