"""Convolutional LSTM cell (Shi et al. 2015)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


class ConvLSTMCell(nn.Module):
  """i, f, o, g from one 3×3 conv over concat(x, h); carry is (c, h), both (B, H, W, features)."""
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    gates = nn.Conv(4 * self.features, (self.kernel_size, self.kernel_size), padding="SAME",
                    dtype=self.dtype, name="gates")(jnp.concatenate([x, h.astype(x.dtype)], -1))
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    new_c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    new_h = nn.sigmoid(o) * jnp.tanh(new_c)
    return (new_c, new_h), new_h

  @staticmethod
  def initial_carry(batch_shape, features: int, dtype=jnp.float32):
    zeros = jnp.zeros((*batch_shape, features), dtype)
    return zeros, zeros
