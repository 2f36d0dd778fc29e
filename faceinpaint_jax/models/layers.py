"""Small building blocks shared by the generator and the discriminators."""

from typing import Any, Sequence

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
      # at input rows m + (r + t − pad)/s: a contiguous run of taps, so a small stride-1 conv.
      pad = _same_transpose_padding(size, s)
      taps = [[t for t in range(size) if (r + t - pad) % s == 0] for r in range(s)]
      return [(ts, (r + ts[0] - pad) // s) for r, ts in enumerate(taps)]

    phases = []
    for rows, row_offset in phase_taps(kh):
      row = []
      for cols, col_offset in phase_taps(kw):
        sub = kernel[jnp.array(rows)][:, jnp.array(cols)]
        padding = ((-row_offset, row_offset + len(rows) - 1), (-col_offset, col_offset + len(cols) - 1))
        row.append(jax.lax.conv_general_dilated(
            x, sub, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
      phases.append(jnp.stack(row, axis=3))
    y = jnp.stack(phases, axis=2)  # (B, H, s, W, s, C): row phase, then column phase
    return y.reshape(batch, height * s, width * s, self.features)


class ConvBNAct(nn.Module):
  """conv → BatchNorm → LeakyReLU(0.2): the unit of every encoder/decoder stage."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int = 1
  dilation: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, tuple(self.kernel_size), strides=self.strides,
                kernel_dilation=self.dilation, padding="SAME", use_bias=False,
                dtype=self.dtype)(x)
    x = batch_norm(train, self.dtype)(x)
    return leaky_relu(x)


class ResNetBlock(nn.Module):
  """Fig. 2: conv–BN–LeakyReLU–conv–BN plus identity skip."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(x)
    y = leaky_relu(batch_norm(train, self.dtype)(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(y)
    y = batch_norm(train, self.dtype)(y)
    return x + y
