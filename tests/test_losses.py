"""Each loss of §3.4 on tiny inputs computed by hand."""

import math

import chex
import jax.numpy as jnp
import ml_collections
import numpy as np

from faceinpaint_jax.train import losses


def test_hole_mse_eq5():
  completion = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])[None]  # (1, 2, 2, 1)
  mask = jnp.array([[[1.0], [0.0]], [[0.0], [1.0]]])[None]
  # (1² + 4²) / 2 hole elements
  chex.assert_trees_all_close(losses.hole_mse(completion, jnp.zeros_like(completion), mask), 8.5)
  # RGB with errors that differ in and out of the hole and between channels: the mean runs over the
  # 2 hole pixels × 3 channels only. Normalising by the whole image would give 13/12 (masked) or
  # 52/12 (unmasked) instead of 13/6.
  errors = jnp.array([[[1.0, 2.0, 0.0], [2.0, 2.0, 2.0]], [[3.0, 3.0, 3.0], [0.0, 2.0, 2.0]]])[None]
  ground_truth = jnp.linspace(-1, 1, 12).reshape(1, 2, 2, 3)
  chex.assert_trees_all_close(losses.hole_mse(ground_truth + errors, ground_truth, mask),
                              (1 + 4 + 0 + 0 + 4 + 4) / 6, rtol=1e-6)


def test_attention_loss_eq6():
  mask = jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(1.0)
  maps = jnp.stack([jnp.full((1, 2, 2, 1), 0.5), mask])  # A_1 = 0.5, A_2 = M
  expected = (3 * 0.25 + 9 * 0.0) / 4 ** (1 / 3)
  chex.assert_trees_all_close(losses.attention_loss(maps, mask, theta=3.0), expected, rtol=1e-6)
  maps = jnp.stack([mask, jnp.full((1, 2, 2, 1), 0.5)])  # later mistakes weigh θ times more
  chex.assert_trees_all_close(losses.attention_loss(maps, mask, theta=3.0), 9 * 0.25 / 4 ** (1 / 3),
                              rtol=1e-6)


def test_attention_loss_bce_form_and_its_gradient_on_confidently_missed_damage():
  import jax
  mask = jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(1.0)
  maps = jnp.stack([jnp.full((1, 2, 2, 1), 0.5),
                    jnp.full((1, 2, 2, 1), 0.5).at[0, 0, 0, 0].set(0.9).at[0, 0, 1, 0].set(0.2)])
  # A_1: −log 0.5 at every pixel; A_2: −log 0.9 in the hole, −log 0.8 and twice −log 0.5 at the known.
  expected = (3 * math.log(2) + 9 * (-math.log(0.9) - math.log(0.8) + 2 * math.log(2)) / 4) / 4 ** (1 / 3)
  chex.assert_trees_all_close(losses.attention_loss(maps, mask, theta=3.0, form="bce"), expected, rtol=1e-6)
  # The reason for the form: a hole pixel the map has confidently missed (logit −6, A ≈ 0.0025) gets
  # about 400× the squared error's gradient on its logit, which A(1 − A) all but cancels.
  logits = jnp.stack([jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(-6.0)])
  grad = {form: jax.grad(lambda z: losses.attention_loss(jax.nn.sigmoid(z), mask, 3.0, form))(logits)
          for form in ("mse", "bce")}
  a = jax.nn.sigmoid(-6.0)
  chex.assert_trees_all_close(grad["bce"][1, 0, 0, 0, 0], 9 * (a - 1) / 4 / 4 ** (1 / 3), rtol=1e-5)
  chex.assert_trees_all_close(grad["mse"][1, 0, 0, 0, 0], 9 * 2 * (a - 1) * a * (1 - a) / 4 / 4 ** (1 / 3),
                              rtol=1e-5)
  assert float(grad["bce"][1, 0, 0, 0, 0] / grad["mse"][1, 0, 0, 0, 0]) > 150


def test_multiscale_loss_eq8():
  gt = jnp.full((1, 4, 4, 3), 0.5)
  # A different error at each scale (1/4: 0.5, 1/2: 0.25, full: 0.125 per element): the weights
  # λ², λ, 1 in this order give a different sum than any other assignment.
  outputs = [jnp.zeros((1, 1, 1, 3)), jnp.full((1, 2, 2, 3), 0.25), jnp.full((1, 4, 4, 3), 0.375)]
  expected = 0.75 ** 2 * 0.25 + 0.75 * 0.0625 + 1.0 * 0.015625
  reversed_weights = 1.0 * 0.25 + 0.75 * 0.0625 + 0.75 ** 2 * 0.015625
  assert abs(expected - reversed_weights) > 0.05
  chex.assert_trees_all_close(losses.multiscale_loss(outputs, gt, lam=0.75), expected, rtol=1e-6)
  gt = jnp.array([[0.0, 2.0], [4.0, 6.0]])[None, :, :, None]
  np.testing.assert_allclose(losses.downsample_to(gt, 1), 3.0)  # box average


def test_adversarial_losses_eq7_eq11():
  zero = jnp.zeros(4)
  chex.assert_trees_all_close(losses.generator_adversarial_loss(zero), math.log(2), rtol=1e-6)
  chex.assert_trees_all_close(losses.discriminator_loss(zero, zero), 2 * math.log(2), rtol=1e-6)
  # A confident, correct discriminator: real → +10, fake → −10.
  chex.assert_trees_all_close(losses.discriminator_loss(jnp.full(4, 10.0), jnp.full(4, -10.0)),
                              2 * math.log1p(math.exp(-10)), rtol=1e-5)
  # −log σ(x) for the generator: fooling D (x → +∞) costs nothing.
  chex.assert_trees_all_close(losses.generator_adversarial_loss(jnp.array([2.0])),
                              math.log1p(math.exp(-2.0)), rtol=1e-6)


def test_generator_loss_eq10_and_stages():
  # Distinct weights and terms (powers of two): a swapped pair of weights changes the sum.
  weights = ml_collections.ConfigDict(dict(adversarial=0.01, semantic=2.0, multiscale=4.0,
                                           attention=8.0, mse=16.0))
  terms = {"attention": 1.0, "mse": 2.0, "adversarial": 100.0, "multiscale": 4.0, "semantic": 8.0}
  assert losses.generator_loss(terms, weights, stage2=False) == 8.0 + 32.0
  assert losses.generator_loss(terms, weights, stage2=True) == 8.0 + 32.0 + 1.0 + 16.0 + 16.0
  # Variants that do not compute a term (no attentive module, no GAN) leave it out.
  no_gan = {k: v for k, v in terms.items() if k not in ("adversarial", "attention")}
  assert losses.generator_loss(no_gan, weights, stage2=True) == 32.0 + 16.0 + 16.0


def test_stage2_ramp_scales_only_the_terms_stage2_adds():
  weights = ml_collections.ConfigDict(dict(adversarial=0.01, semantic=2.0, multiscale=4.0,
                                           attention=8.0, mse=16.0))
  terms = {"attention": 1.0, "mse": 2.0, "adversarial": 100.0, "multiscale": 4.0, "semantic": 8.0}
  assert losses.generator_loss(terms, weights, stage2=True, stage2_ramp=0.25) == 40.0 + 0.25 * 33.0
  assert losses.generator_loss(terms, weights, stage2=True, stage2_ramp=0.0) == 40.0
