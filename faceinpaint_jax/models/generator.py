"""The generator: attentive recurrent module followed by the completion network, and Eq. 3."""

from typing import Any, Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from faceinpaint_jax.models.attention import AttentiveRecurrentModule
from faceinpaint_jax.models.completion import CompletionNetwork

Dtype = Any


def compose(completion, damaged, hole_mask):
  """Eq. 3: I_rec = C(I, A_N) ⊙ M + I ⊙ (1 − M). Known pixels are copied, not recomputed."""
  chex.assert_equal_shape_prefix([completion, damaged, hole_mask], 3)
  hole = hole_mask > 0.5
  return jnp.where(hole, completion.astype(damaged.dtype), damaged)


class Generator(nn.Module):
  """(damaged I, B×H×W×3 in [−1, 1]) → dict(attention_maps (N,B,H,W,1), completion, multiscale)."""
  attention_steps: int = 3
  attention_features: int = 32
  attention_resblocks: int = 3
  completion_width: int = 64
  dilation_rates: Sequence[int] = (2, 4, 8, 16)
  use_skips: bool = True
  upsample: str = "transpose"
  nonlocal_impl: str = "einsum"
  nonlocal_chunk: int = 128
  attention_kv_pool: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, damaged, train: bool = False):
    chex.assert_rank(damaged, 4)
    chex.assert_axis_dimension(damaged, 3, 3)
    x = damaged.astype(self.dtype)
    attention_maps = AttentiveRecurrentModule(
        num_steps=self.attention_steps, features=self.attention_features,
        num_resblocks=self.attention_resblocks, nonlocal_impl=self.nonlocal_impl,
        nonlocal_chunk=self.nonlocal_chunk, nonlocal_kv_pool=self.attention_kv_pool,
        dtype=self.dtype, name="attention")(x, train)
    completion, multiscale = CompletionNetwork(
        width=self.completion_width, dilation_rates=tuple(self.dilation_rates),
        use_skips=self.use_skips, upsample=self.upsample, nonlocal_impl=self.nonlocal_impl,
        nonlocal_chunk=self.nonlocal_chunk, dtype=self.dtype, name="completion")(
            x, attention_maps[-1], train)
    return {"attention_maps": attention_maps, "completion": completion, "multiscale": multiscale}
