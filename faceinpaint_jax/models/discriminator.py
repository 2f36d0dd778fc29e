"""Global and local discriminators (§3.3): GLCIC-shaped conv stacks with a SAGAN-style non-local block."""

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from faceinpaint_jax.models.layers import batch_norm, leaky_relu, strided_conv
from faceinpaint_jax.models.non_local import NonLocalBlock

Dtype = Any


class ConvDiscriminator(nn.Module):
  """conv5×5/2 stages → flatten → dense → dense 1; returns one logit per example, shape (B,)."""
  widths: Sequence[int]
  non_local_after: int  # index of the stage followed by the non-local block
  dense_features: int = 1024
  spectral_norm: bool = False
  use_batchnorm: bool = True
  nonlocal_impl: str = "einsum"
  dtype: Dtype = jnp.float32

  def _layer(self, layer, x, train):
    if self.spectral_norm:
      return nn.SpectralNorm(layer)(x, update_stats=train)
    return layer(x)

  @nn.compact
  def __call__(self, images, train: bool = False):
    chex.assert_rank(images, 4)
    x = images.astype(self.dtype)
    for i, features in enumerate(self.widths):
      # No normalisation on the first stage (DCGAN practice): it sees raw pixels. Where BatchNorm
      # follows, a conv bias would be cancelled by the mean subtraction, so there is none.
      normalised = self.use_batchnorm and i > 0
      x = self._layer(nn.Conv(features, (5, 5), strides=2, padding="SAME", use_bias=not normalised,
                              dtype=self.dtype, conv_general_dilated=strided_conv,
                              name=f"conv_{i}"), x, train)
      if normalised:
        x = batch_norm(train, self.dtype, name=f"bn_{i}")(x)
      x = leaky_relu(x)
      if i == self.non_local_after:
        x = NonLocalBlock(impl=self.nonlocal_impl, dtype=self.dtype, name="non_local")(x)
    x = x.reshape((x.shape[0], -1))
    x = leaky_relu(self._layer(nn.Dense(self.dense_features, dtype=self.dtype, name="dense"), x, train))
    logits = self._layer(nn.Dense(1, dtype=self.dtype, name="logit"), x, train)
    return logits[:, 0].astype(jnp.float32)


class Discriminators(nn.Module):
  """Both discriminators; `__call__(images, local_windows)` → (global_logits, local_logits), each (B,)."""
  global_widths: Sequence[int] = (64, 128, 256, 512, 512)
  global_non_local_after: int = 1  # after the 128-channel stage
  local_widths: Sequence[int] = (64, 128, 256, 512)
  local_non_local_after: int = 3  # after the last (512-channel) stage
  dense_features: int = 1024
  spectral_norm: bool = False
  use_batchnorm: bool = True
  nonlocal_impl: str = "einsum"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, local_windows, train: bool = False):
    chex.assert_rank([images, local_windows], 4)
    chex.assert_equal(images.shape[0], local_windows.shape[0])
    common = dict(dense_features=self.dense_features, spectral_norm=self.spectral_norm,
                  use_batchnorm=self.use_batchnorm, nonlocal_impl=self.nonlocal_impl, dtype=self.dtype)
    global_logits = ConvDiscriminator(self.global_widths, self.global_non_local_after,
                                      name="global_disc", **common)(images, train)
    local_logits = ConvDiscriminator(self.local_widths, self.local_non_local_after,
                                     name="local_disc", **common)(local_windows, train)
    chex.assert_shape([global_logits, local_logits], (images.shape[0],))
    return global_logits, local_logits
