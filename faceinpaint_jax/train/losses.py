"""The paper's losses (§3.4), Eqs. 5–11, on NHWC arrays with masks 1 in the hole.

‖·‖ is the mean squared error, as §3.4.2 defines it. Eq. 7 is used in its non-saturating form
(sigmoid cross-entropy on logits), which the paper says is what is used in practice.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


def hole_mse(completion, ground_truth, hole_mask):
  """Eq. 5: mean of (M ⊙ (C(I, A_N) − I_gt))² over hole elements (pixels × channels)."""
  chex.assert_equal_shape([completion, ground_truth])
  chex.assert_equal_shape_prefix([completion, hole_mask], 3)
  mask = jnp.broadcast_to(hole_mask, completion.shape).astype(jnp.float32)
  squared = jnp.square(completion.astype(jnp.float32) - ground_truth.astype(jnp.float32))
  return jnp.sum(mask * squared) / jnp.maximum(jnp.sum(mask), 1.0)


ATTENTION_FORMS = ("mse", "bce")
_BCE_EPS = 1e-6


def attention_loss(attention_maps, hole_mask, theta: float = 3.0, form: str = "mse"):
  """Eq. 6: Σ_t θ^t · mse(A_t, M) / ∛(HW), t = 1…N; later maps weigh more.

  `form="bce"` puts the per-pixel binary cross-entropy in place of the squared error. A sigmoid map
  under squared error learns slowly exactly where it is confidently wrong (the gradient carries a factor
  A(1 − A)), which is where damage that looks like a face — a pasted patch — sits; cross-entropy keeps
  that gradient at A − M."""
  chex.assert_rank(attention_maps, 5)
  num_steps, _, height, width, _ = attention_maps.shape
  maps = attention_maps.astype(jnp.float32)
  target = hole_mask[None].astype(jnp.float32)
  if form == "mse":
    per_pixel = jnp.square(maps - target)
  elif form == "bce":
    maps = jnp.clip(maps, _BCE_EPS, 1.0 - _BCE_EPS)
    per_pixel = -(target * jnp.log(maps) + (1.0 - target) * jnp.log1p(-maps))
  else:
    raise ValueError(f"unknown attention loss form {form!r}; choose one of {ATTENTION_FORMS}")
  per_step = jnp.mean(per_pixel, axis=(1, 2, 3, 4))
  weights = theta ** jnp.arange(1, num_steps + 1, dtype=jnp.float32)
  return jnp.sum(weights * per_step) / (height * width) ** (1.0 / 3.0)


def downsample_to(images, size: int):
  """Box-filter down-sampling by an integer factor: the ground-truth label for a multi-scale output."""
  factor = images.shape[1] // size
  if factor == 1:
    return images
  return nn.avg_pool(images, (factor, factor), strides=(factor, factor))


def multiscale_loss(multiscale_outputs, ground_truth, lam: float = 0.75):
  """Eq. 8: Σ_t λ^{T−t} mse(O_t, label_t) over outputs ordered from the smallest (1/4) to full size."""
  total = 0.0
  num_scales = len(multiscale_outputs)
  for t, output in enumerate(multiscale_outputs, start=1):
    label = downsample_to(ground_truth, output.shape[1])
    chex.assert_equal_shape([output, label])
    total = total + lam ** (num_scales - t) * jnp.mean(jnp.square(output.astype(jnp.float32) - label))
  return total


def generator_adversarial_loss(fake_logits):
  """Eq. 7, non-saturating: −log D(I_rec) = softplus(−logit), batch mean."""
  return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def discriminator_loss(real_logits, fake_logits):
  """Eq. 11 for one discriminator: −log D(I_gt) − log(1 − D(I_rec)), batch means."""
  return (jnp.mean(jax.nn.softplus(-real_logits.astype(jnp.float32)))
          + jnp.mean(jax.nn.softplus(fake_logits.astype(jnp.float32))))


def semantic_loss(parser_apply, ground_truth, reconstructed, parser_size: int):
  """Eq. 9: cross-entropy between parse(I_rec) logits and the argmax labels of parse(I_gt).

  Images in [−1, 1] are mapped to [0, 1], resized (bilinear) to the parser's input size and ImageNet-
  normalised; `parser_apply` is the frozen parser (no gradients reach its weights, BatchNorm in eval mode).
  """
  from faceinpaint_jax.parser.bisenet import normalize

  def prepare(images):
    b, _, _, c = images.shape
    images = (images.astype(jnp.float32) + 1.0) / 2.0
    if images.shape[1] != parser_size:
      images = jax.image.resize(images, (b, parser_size, parser_size, c), method="bilinear")
    return normalize(images)

  target = jnp.argmax(jax.lax.stop_gradient(parser_apply(prepare(ground_truth))), axis=-1)
  logits = parser_apply(prepare(reconstructed)).astype(jnp.float32)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, target))


STAGE1_TERMS = ("attention", "mse")  # Algorithm 1, stage 1
STAGE2_TERMS = ("attention", "mse", "multiscale", "adversarial", "semantic")  # Eq. 10


def generator_loss(terms: dict, loss_config, stage2: bool, stage2_ramp=1.0):
  """Eq. 10: α L_adv + L_sem + L_mut + L_att + L_mse; stage 1 (Algorithm 1) uses L_att + L_mse only.

  Terms a variant does not compute (no attentive module, no GAN, no face parser) are simply absent.
  `stage2_ramp` ∈ [0, 1] scales the terms that stage 2 adds (L_mut, L_adv, L_sem) while they are
  being phased in.
  """
  names = STAGE2_TERMS if stage2 else STAGE1_TERMS
  return sum(getattr(loss_config, name) * terms[name] * (1.0 if name in STAGE1_TERMS else stage2_ramp)
             for name in names if name in terms)
