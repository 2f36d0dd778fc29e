"""The generator: attentive recurrent module followed by the completion network, and Eq. 3."""

from typing import Any, Sequence

import chex
import einops
import flax.linen as nn
import jax
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
  """(damaged I, B×H×W×3 in [−1, 1]) → dict(attention_maps (N,B,H,W,1), completion, multiscale).

  With `attentive=False` (the Context Encoders / GLCIC-style baseline) there is no attentive module:
  the completion network is given the true `hole_mask` in place of A_N, and the output has no
  attention maps.
  """
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
  # The attentive module runs at the image size divided by this factor; 1 (the paper) runs it at full
  # resolution. `attention_sampling` says how the image gets there and its maps get back:
  #   "average": the image average-pooled, the maps resized back bilinearly;
  #   "space_to_depth": each f×f block of pixels folded into one position's channels, and each position
  #   predicting its block of the full-size map: the module sees the seams and grain pooling blurs away,
  #   at no measurable cost. Measured on the mixture of fills it found no kind of damage better (pasted
  #   patches worse; docs/REAL_PHOTOS.md), so "average" stays the default.
  attention_downsample: int = 1
  attention_sampling: str = "average"
  attentive: bool = True
  # False: A_N enters the completion network detached, so only L_att trains the attentive module.
  attention_trained_by_completion: bool = True
  use_non_local: bool = True
  norm: str = "batch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, damaged, hole_mask=None, train: bool = False):
    chex.assert_rank(damaged, 4)
    chex.assert_axis_dimension(damaged, 3, 3)
    x = damaged.astype(self.dtype)
    outputs = {}
    if self.attentive:
      f = self.attention_downsample
      folded = f > 1 and self.attention_sampling == "space_to_depth"
      if f == 1:
        seen = x
      elif folded:
        seen = einops.rearrange(x, "b (h p) (w q) c -> b h w (p q c)", p=f, q=f)
      else:
        seen = nn.avg_pool(x, (f, f), strides=(f, f))
      attention_maps = AttentiveRecurrentModule(
          num_steps=self.attention_steps, features=self.attention_features,
          num_resblocks=self.attention_resblocks, nonlocal_impl=self.nonlocal_impl,
          nonlocal_chunk=self.nonlocal_chunk, nonlocal_kv_pool=self.attention_kv_pool,
          use_non_local=self.use_non_local, norm=self.norm, map_channels=f * f if folded else 1,
          dtype=self.dtype, name="attention")(seen, train)
      if folded:
        attention_maps = einops.rearrange(attention_maps, "n b h w (p q) -> n b (h p) (w q) 1", p=f, q=f)
      elif f > 1:
        attention_maps = jax.image.resize(attention_maps, (*attention_maps.shape[:2], *x.shape[1:3], 1),
                                          method="bilinear")
      chex.assert_shape(attention_maps, (self.attention_steps, *x.shape[:3], 1))
      outputs["attention_maps"] = attention_maps
      hole_estimate = attention_maps[-1]
      if not self.attention_trained_by_completion:
        hole_estimate = jax.lax.stop_gradient(hole_estimate)
    else:
      if hole_mask is None:
        raise ValueError("a generator without the attentive module (model.attentive=False) needs the hole mask")
      chex.assert_shape(hole_mask, (*damaged.shape[:3], 1))
      hole_estimate = hole_mask.astype(jnp.float32)
    completion, multiscale = CompletionNetwork(
        width=self.completion_width, dilation_rates=tuple(self.dilation_rates),
        use_skips=self.use_skips, upsample=self.upsample, nonlocal_impl=self.nonlocal_impl,
        nonlocal_chunk=self.nonlocal_chunk, use_non_local=self.use_non_local, norm=self.norm,
        dtype=self.dtype, name="completion")(x, hole_estimate, train)
    return {**outputs, "completion": completion, "multiscale": multiscale}
