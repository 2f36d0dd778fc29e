"""Completion encoder–decoder (§3.2, Fig. 4) with multi-scale RGB heads for Eq. 8."""

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from faceinpaint_jax.models.layers import ConvBNAct, SubpixelConvTranspose, leaky_relu, norm_layer
from faceinpaint_jax.models.non_local import NonLocalBlock

Dtype = Any

UPSAMPLE_MODES = ("transpose", "resize_conv", "bilinear")


class Upsample2x(nn.Module):
  """×2 up-sampling stage: transposed conv (the paper's), or nearest / bilinear resize + conv.

  The transposed conv computes even and odd output rows with different kernel taps; random
  horizontal flips make the network even out the column phases but nothing does that for the rows,
  and a small model trained briefly draws horizontal stripes two pixels apart. Nearest resize leaves
  2×2 blocks per stage. Bilinear resize + conv has neither (Odena et al. 2016, "Deconvolution and
  checkerboard artifacts").
  """
  features: int
  mode: str = "transpose"
  norm: str = "batch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.mode == "transpose":
      # Named as nn.ConvTranspose would be, so parameters are those of the paper's layer.
      x = SubpixelConvTranspose(self.features, (4, 4), 2, dtype=self.dtype, name="ConvTranspose_0")(x)
    elif self.mode in ("resize_conv", "bilinear"):
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest" if self.mode == "resize_conv" else "bilinear")
      x = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=self.norm == "none",
                  dtype=self.dtype)(x)
    else:
      raise ValueError(f"unknown upsample mode {self.mode!r}; choose one of {UPSAMPLE_MODES}")
    return leaky_relu(norm_layer(self.norm, self.features, train, self.dtype)(x))


class ToRGB(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(3, (3, 3), padding="SAME", dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class CompletionNetwork(nn.Module):
  """C(I, A): returns the full-size completion and the [H/4, H/2, H] multi-scale outputs in [−1, 1].

  A is the attentive module's A_N, or the true hole mask for the mask-given baseline.

  Widths follow Fig. 4 with `width`=64: encoder 64, 128, 128, 256; flattening block 256;
  decoder 256, 128, 128, 64, 32, 3.
  """
  width: int = 64
  dilation_rates: Sequence[int] = (2, 4, 8, 16)
  use_skips: bool = True
  upsample: str = "transpose"
  nonlocal_impl: str = "einsum"
  nonlocal_chunk: int = 128
  use_non_local: bool = True
  norm: str = "batch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, damaged, attention, train: bool = False):
    chex.assert_rank([damaged, attention], 4)
    batch, height, width, _ = damaged.shape
    chex.assert_shape(attention, (batch, height, width, 1))
    if height % 4 or width % 4:
      raise ValueError(f"image size must be divisible by 4, got {height}×{width}")
    w = self.width

    def non_local(name):
      if not self.use_non_local:
        return lambda x: x
      return NonLocalBlock(impl=self.nonlocal_impl, chunk_size=self.nonlocal_chunk, dtype=self.dtype,
                           name=name)

    unit = lambda features, name, **kw: ConvBNAct(features, norm=self.norm, dtype=self.dtype, name=name,
                                                  **kw)
    skip = lambda x, e: jnp.concatenate([x, e], axis=-1) if self.use_skips else x

    x = jnp.concatenate([damaged, attention.astype(damaged.dtype)], axis=-1).astype(self.dtype)
    # Down-sampling block.
    enc_full = unit(w, "down_0", kernel_size=(5, 5))(x, train)
    enc_half = unit(2 * w, "down_1", strides=2)(enc_full, train)
    enc_half = unit(2 * w, "down_2")(enc_half, train)
    enc_quarter = unit(4 * w, "down_3", strides=2)(enc_half, train)
    # Flattening block at H/4: non-local, dilated convs, non-local.
    x = non_local("flat_non_local_in")(enc_quarter)
    for i, rate in enumerate(self.dilation_rates):
      x = unit(4 * w, f"flat_dilated_{i}", dilation=rate)(x, train)
    x = non_local("flat_non_local_out")(x)
    # Up-sampling block with multi-scale heads.
    x = unit(4 * w, "up_0")(skip(x, enc_quarter), train)
    out_quarter = ToRGB(dtype=self.dtype, name="rgb_quarter")(x)
    x = Upsample2x(2 * w, self.upsample, norm=self.norm, dtype=self.dtype, name="up_1")(x, train)
    x = unit(2 * w, "up_2")(skip(x, enc_half), train)
    out_half = ToRGB(dtype=self.dtype, name="rgb_half")(x)
    x = Upsample2x(w, self.upsample, norm=self.norm, dtype=self.dtype, name="up_3")(x, train)
    x = unit(max(w // 2, 1), "up_4")(skip(x, enc_full), train)
    out_full = ToRGB(dtype=self.dtype, name="rgb_full")(x)

    chex.assert_shape(out_quarter, (batch, height // 4, width // 4, 3))
    chex.assert_shape(out_half, (batch, height // 2, width // 2, 3))
    chex.assert_shape(out_full, (batch, height, width, 3))
    return out_full, (out_quarter, out_half, out_full)
