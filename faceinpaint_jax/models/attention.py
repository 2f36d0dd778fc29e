"""Attentive recurrent module (§3.1, Fig. 1): finds the damaged region without being given a mask."""

from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp

from faceinpaint_jax.models.convlstm import ConvLSTMCell
from faceinpaint_jax.models.layers import ResNetBlock, leaky_relu
from faceinpaint_jax.models.non_local import NonLocalBlock

Dtype = Any

INITIAL_ATTENTION = 0.5  # A_0: no prior belief about where the hole is.


class AttentiveStep(nn.Module):
  """One recurrent step: concat(I, A_{t-1}) → conv → K ResNet blocks → non-local → ConvLSTM → conv → σ."""
  features: int = 32
  num_resblocks: int = 3
  nonlocal_impl: str = "einsum"
  nonlocal_chunk: int = 128
  nonlocal_kv_pool: int = 1
  use_non_local: bool = True
  norm: str = "batch"
  # Channels of one position's attention: 1, or f² when the image arrives folded f×f into channels
  # (each position then predicts its f×f block of the full-size map).
  map_channels: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, damaged, train: bool):
    lstm_carry, previous_attention = carry
    x = jnp.concatenate([damaged, previous_attention.astype(damaged.dtype)], axis=-1)
    x = leaky_relu(nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype, name="stem")(x))
    for k in range(self.num_resblocks):
      x = ResNetBlock(self.features, norm=self.norm, dtype=self.dtype, name=f"resblock_{k}")(x, train)
    if self.use_non_local:
      x = NonLocalBlock(impl=self.nonlocal_impl, chunk_size=self.nonlocal_chunk,
                        kv_pool=self.nonlocal_kv_pool, dtype=self.dtype, name="non_local")(x)
    lstm_carry, h = ConvLSTMCell(self.features, dtype=self.dtype, name="convlstm")(lstm_carry, x)
    logits = nn.Conv(self.map_channels, (3, 3), padding="SAME", dtype=self.dtype, name="to_attention")(h)
    # Attention maps stay float32 whatever the compute dtype: they feed a loss and a threshold.
    attention = nn.sigmoid(logits.astype(jnp.float32))
    return (lstm_carry, attention), attention


class AttentiveRecurrentModule(nn.Module):
  """N steps of `AttentiveStep` with shared parameters, run by `nn.scan` and fully unrolled.

  Unrolling matters on CPU: with `unroll=1` the ConvLSTM backward pass was ~20× slower.
  Returns attention maps stacked as (N, B, H, W, map_channels).
  """
  num_steps: int = 3
  features: int = 32
  num_resblocks: int = 3
  nonlocal_impl: str = "einsum"
  nonlocal_chunk: int = 128
  nonlocal_kv_pool: int = 1
  use_non_local: bool = True
  norm: str = "batch"
  map_channels: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, damaged, train: bool = False):
    chex.assert_rank(damaged, 4)
    batch, height, width, _ = damaged.shape
    scanned = nn.scan(
        AttentiveStep,
        variable_broadcast="params",
        # Weights are shared; BatchNorm running statistics are kept per step, because the
        # activations of step t depend on A_{t-1} and so have statistics of their own.
        variable_axes={"batch_stats": 0},
        split_rngs={"params": False},
        in_axes=(nn.broadcast, nn.broadcast),
        length=self.num_steps,
        unroll=True,
    )
    step = scanned(features=self.features, num_resblocks=self.num_resblocks,
                   nonlocal_impl=self.nonlocal_impl, nonlocal_chunk=self.nonlocal_chunk,
                   nonlocal_kv_pool=self.nonlocal_kv_pool, use_non_local=self.use_non_local,
                   norm=self.norm, map_channels=self.map_channels, dtype=self.dtype, name="step")
    lstm_carry = ConvLSTMCell.initial_carry((batch, height, width), self.features)
    initial_attention = jnp.full((batch, height, width, self.map_channels), INITIAL_ATTENTION, jnp.float32)
    _, attention_maps = step((lstm_carry, initial_attention), damaged, train)
    chex.assert_shape(attention_maps, (self.num_steps, batch, height, width, self.map_channels))
    return attention_maps
