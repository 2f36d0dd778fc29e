"""Train steps: pure functions of (state, batch) → (state, metrics), one per phase of Algorithm 1.

- stage 1: `generator_step(state, batch, stage2=False)`: G on L_att + L_mse.
- stage 2 with the GAN: `adversarial_step(state, batch)`: one generator forward, whose backward pass is
  kept (`jax.vjp`); D is updated on the stopped-gradient completion, then G's losses are taken against
  the *updated* D and pulled back through the kept forward — Algorithm 1's order at the cost of one
  G forward instead of two.
- stage 2 without the GAN (`train.gan=False`, an ablation): `generator_step(state, batch, stage2=True)`.

`discriminator_step` followed by `generator_step(..., True)` is the two-forward form of
`adversarial_step`, kept as its reference (tests hold the two equal).

Each is compiled once by `jax.jit` with the batch sharded over the mesh's `data` axis and the state
replicated, so gradients and BatchNorm statistics are over the global batch whatever the number of
devices. An update whose loss or gradients are not finite leaves that network's state unchanged (and
is counted).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from faceinpaint_jax.config import ConfigError
from faceinpaint_jax.models import (build_discriminators, build_generator, compose, crop_local_window,
                                    local_window_size)
from faceinpaint_jax.parser.bisenet import BiSeNet
from faceinpaint_jax.train import losses
from faceinpaint_jax.train.state import TrainState, ema_decay_at, make_optimizers


def _bind_parser(step, parser_variables, state, batch, *args):
  return step(state, batch, parser_variables, *args)


def _all_finite(*trees) -> jax.Array:
  leaves = [x for t in trees for x in jax.tree_util.tree_leaves(t)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _select(ok, new, old):
  return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)


def _count_nonfinite(state: TrainState, ok, network: str) -> dict:
  """The skip counters of `network` ("g" or "d") after an update that was finite iff `ok`."""
  in_a_row = getattr(state, f"{network}_nonfinite_in_a_row")
  total = getattr(state, f"{network}_nonfinite_total")
  return {f"{network}_nonfinite_in_a_row": jnp.where(ok, 0, in_a_row + 1),
          f"{network}_nonfinite_total": total + jnp.where(ok, 0, 1)}


class Steps:
  """Builds the step functions for one config; after `compile`, `generator_step(state, batch, stage2)`,
  `adversarial_step(state, batch)`, `discriminator_step(state, batch)` and `predict(state, batch)` are
  the jitted entry points."""

  def __init__(self, config, parser_variables: dict | None = None):
    self.config = config
    self.generator = build_generator(config)
    self.discriminators = build_discriminators(config)
    self.window = local_window_size(config)
    self.g_tx, self.d_tx = make_optimizers(config)
    # L_sem (Eq. 9) needs the frozen face parser; its weights travel as a jit argument (not baked into
    # the program as constants) and never receive gradients or BatchNorm updates.
    if config.loss.semantic > 0 and parser_variables is None:
      raise ConfigError("loss.semantic > 0 needs the face parser's weights")
    self.parser_variables = parser_variables if config.loss.semantic > 0 else None
    self.parser = BiSeNet()

  # -- shared forward pieces ----------------------------------------------------------------------
  def _generate(self, g_params, g_batch_stats, batch):
    outputs, updates = self.generator.apply(
        {"params": g_params, "batch_stats": g_batch_stats}, batch["damaged"], batch["hole_mask"],
        train=True, mutable=["batch_stats"])
    completed = compose(outputs["completion"], batch["damaged"], batch["hole_mask"])
    return outputs, completed, updates.get("batch_stats", {})

  def _discriminate(self, d_params, d_batch_stats, images, offsets):
    return self._apply_discriminators(d_params, d_batch_stats, images,
                                      crop_local_window(images, offsets, self.window))

  def _apply_discriminators(self, d_params, d_batch_stats, images, windows):
    (global_logits, local_logits), updates = self.discriminators.apply(
        {"params": d_params, "batch_stats": d_batch_stats}, images, windows, train=True,
        mutable=["batch_stats"])
    return global_logits, local_logits, updates.get("batch_stats", {})

  def _discriminate_with_r1(self, d_params, d_batch_stats, images, offsets):
    """`_discriminate` on real images, plus each discriminator's R1 term: the batch mean of
    ‖∇ logit‖² with respect to its own input (the whole image for the global one, the window for the
    local one; the window is cut first, so each gradient is its discriminator's alone)."""
    windows = crop_local_window(images, offsets, self.window)

    def summed_logits(images, windows):
      global_logits, local_logits, stats = self._apply_discriminators(d_params, d_batch_stats, images, windows)
      return jnp.sum(global_logits) + jnp.sum(local_logits), (global_logits, local_logits, stats)

    (_, logits_and_stats), (grad_images, grad_windows) = jax.value_and_grad(
        summed_logits, argnums=(0, 1), has_aux=True)(images, windows)
    squared_norm = lambda g: jnp.mean(jnp.sum(jnp.square(g.astype(jnp.float32)), axis=(1, 2, 3)))
    return logits_and_stats, (squared_norm(grad_images), squared_norm(grad_windows))

  def _generator_terms(self, outputs, completed, batch, parser_variables, stage2: bool, d_params=None,
                       d_batch_stats=None):
    """The loss terms of Eq. 10 that this stage and variant use, by name."""
    loss = self.config.loss
    terms = {"mse": losses.hole_mse(outputs["completion"], batch["image"], batch["hole_mask"])}
    if "attention_maps" in outputs:
      terms["attention"] = losses.attention_loss(outputs["attention_maps"], batch["hole_mask"], loss.theta,
                                                 loss.get("attention_form", "mse"))
    if stage2:
      terms["multiscale"] = losses.multiscale_loss(outputs["multiscale"], batch["image"],
                                                   loss.multiscale_lambda)
      if d_params is not None:
        g_logits, l_logits, _ = self._discriminate(d_params, d_batch_stats, completed,
                                                   batch["window_offset"])
        terms["adversarial"] = (losses.generator_adversarial_loss(g_logits)
                                + losses.generator_adversarial_loss(l_logits))
      if parser_variables is not None:
        parser_apply = lambda x: self.parser.apply(parser_variables, x, train=False)
        # The parser is most of a small model's stage-2 cost; L_sem on the first k images of the
        # batch is an unbiased estimate of its batch mean at k/B of that cost.
        k = loss.get("semantic_images", 0) or completed.shape[0]
        terms["semantic"] = losses.semantic_loss(parser_apply, batch["image"][:k], completed[:k],
                                                 loss.semantic_size)
    return terms

  def _apply_generator_update(self, state: TrainState, total, grads, g_stats, terms):
    updates, g_opt_state = self.g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    ok = _all_finite(total, grads)
    g_params = _select(ok, g_params, state.g_params)
    decay = ema_decay_at(self.config.train, state.step)
    g_ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                          state.g_ema_params, g_params)
    new_rng, _ = jax.random.split(state.rng)
    state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        g_ema_params=g_ema_params,
        g_opt_state=_select(ok, g_opt_state, state.g_opt_state),
        g_batch_stats=_select(ok, g_stats, state.g_batch_stats),
        rng=new_rng,
        **_count_nonfinite(state, ok, "g"))
    metrics = {f"g/{k}": v for k, v in terms.items()}
    metrics.update({"g/total": total, "g/grad_norm": optax.tree.norm(grads), "g/finite": ok,
                    "g/nonfinite_in_a_row": state.g_nonfinite_in_a_row,
                    "g/nonfinite_total": state.g_nonfinite_total})
    return state, metrics

  def _stage2_ramp(self, step):
    """Weight of the stage-2 terms at `step`: rises linearly to 1 over train.stage2_rampup_steps."""
    t = self.config.train
    ramp_steps = t.get("stage2_rampup_steps", 0)
    if not ramp_steps:
      return 1.0
    return jnp.clip((step - t.stage1_steps + 1).astype(jnp.float32) / ramp_steps, 0.0, 1.0)

  # -- generator alone (stage 1; stage 2 without the GAN; the reference two-forward stage 2) ---------
  def _generator_step(self, state: TrainState, batch: dict, parser_variables, stage2: bool):
    use_gan = stage2 and self.config.train.gan

    def loss_fn(g_params):
      outputs, completed, g_stats = self._generate(g_params, state.g_batch_stats, batch)
      terms = self._generator_terms(outputs, completed, batch, parser_variables, stage2,
                                    state.d_params if use_gan else None, state.d_batch_stats)
      total = losses.generator_loss(terms, self.config.loss, stage2, self._stage2_ramp(state.step))
      return total, (terms, g_stats)

    (total, (terms, g_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
    return self._apply_generator_update(state, total, grads, g_stats, terms)

  # -- discriminator --------------------------------------------------------------------------------
  def _discriminator_update(self, state: TrainState, batch: dict, completed):
    """Eq. 11 for both discriminators on real images and the (stopped-gradient) completions."""
    completed = jax.lax.stop_gradient(completed)
    offsets = batch["window_offset"]

    r1 = self.config.loss.get("r1", 0.0)

    def loss_fn(d_params):
      if r1 > 0:
        (real_g, real_l, stats), (penalty_global, penalty_local) = self._discriminate_with_r1(
            d_params, state.d_batch_stats, batch["image"], offsets)
      else:
        real_g, real_l, stats = self._discriminate(d_params, state.d_batch_stats, batch["image"], offsets)
      fake_g, fake_l, stats = self._discriminate(d_params, stats, completed, offsets)
      loss_global = losses.discriminator_loss(real_g, fake_g)
      loss_local = losses.discriminator_loss(real_l, fake_l)
      penalties = {}
      if r1 > 0:
        loss_global = loss_global + 0.5 * r1 * penalty_global
        loss_local = loss_local + 0.5 * r1 * penalty_local
        penalties = {"d/r1_global": penalty_global, "d/r1_local": penalty_local}
      probs = {"d/real_prob_global": jnp.mean(jax.nn.sigmoid(real_g)),
               "d/fake_prob_global": jnp.mean(jax.nn.sigmoid(fake_g)),
               "d/real_prob_local": jnp.mean(jax.nn.sigmoid(real_l)),
               "d/fake_prob_local": jnp.mean(jax.nn.sigmoid(fake_l))}
      return loss_global + loss_local, (stats, {"d/global": loss_global, "d/local": loss_local, **probs,
                                                **penalties})

    (total, (stats, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
    updates, d_opt_state = self.d_tx.update(grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    ok = _all_finite(total, grads)
    state = state.replace(
        d_params=_select(ok, d_params, state.d_params),
        d_opt_state=_select(ok, d_opt_state, state.d_opt_state),
        d_batch_stats=_select(ok, stats, state.d_batch_stats),
        **_count_nonfinite(state, ok, "d"))
    return state, {"d/total": total, "d/grad_norm": optax.tree.norm(grads), "d/finite": ok,
                   "d/nonfinite_in_a_row": state.d_nonfinite_in_a_row,
                   "d/nonfinite_total": state.d_nonfinite_total, **terms}

  def _discriminator_step(self, state: TrainState, batch: dict):
    # G runs in train mode as in the G step, but its BatchNorm updates are not kept: one update per step.
    _, completed, _ = self._generate(state.g_params, state.g_batch_stats, batch)
    return self._discriminator_update(state, batch, completed)

  # -- stage 2: D then G, one generator forward -------------------------------------------------------
  def _adversarial_step(self, state: TrainState, batch: dict, parser_variables):
    def forward(g_params):
      outputs, completed, g_stats = self._generate(g_params, state.g_batch_stats, batch)
      return (outputs, completed), g_stats

    (outputs, completed), pull_back, g_stats = jax.vjp(forward, state.g_params, has_aux=True)
    state, d_metrics = self._discriminator_update(state, batch, completed)

    def loss_fn(generated):
      terms = self._generator_terms(*generated, batch, parser_variables, True, state.d_params,
                                    state.d_batch_stats)
      return losses.generator_loss(terms, self.config.loss, True, self._stage2_ramp(state.step)), terms

    (total, terms), cotangent = jax.value_and_grad(loss_fn, has_aux=True)((outputs, completed))
    (grads,) = pull_back(cotangent)
    state, g_metrics = self._apply_generator_update(state, total, grads, g_stats, terms)
    return state, {**d_metrics, **g_metrics}

  # -- compiled entry points ------------------------------------------------------------------------
  def compile(self, state_sharding, batch_sharding):
    """jit the steps with explicit shardings; the state's buffers are donated."""
    parser_variables = (jax.device_put(self.parser_variables, state_sharding)
                        if self.parser_variables is not None else None)
    generator_step = jax.jit(self._generator_step, static_argnums=3,
                             in_shardings=(state_sharding, batch_sharding, state_sharding),
                             out_shardings=(state_sharding, None), donate_argnums=0)
    adversarial_step = jax.jit(self._adversarial_step,
                               in_shardings=(state_sharding, batch_sharding, state_sharding),
                               out_shardings=(state_sharding, None), donate_argnums=0)
    self.generator_step = functools.partial(_bind_parser, generator_step, parser_variables)
    self.generator_step._cache_size = generator_step._cache_size
    self.adversarial_step = functools.partial(_bind_parser, adversarial_step, parser_variables)
    self.adversarial_step._cache_size = adversarial_step._cache_size
    self.discriminator_step = jax.jit(self._discriminator_step,
                                      in_shardings=(state_sharding, batch_sharding),
                                      out_shardings=(state_sharding, None), donate_argnums=0)
    self.predict = jax.jit(self._predict, in_shardings=(state_sharding, batch_sharding))
    return self

  def stage_step(self, state: TrainState, batch: dict, stage2: bool):
    """The update of one iteration of Algorithm 1 in the given stage."""
    if not stage2:
      return self.generator_step(state, batch, False)
    if self.config.train.gan:
      return self.adversarial_step(state, batch)
    return self.generator_step(state, batch, True)

  def _predict(self, state: TrainState, batch: dict):
    """Eval-mode forward (running BatchNorm statistics, EMA weights) for sample grids."""
    outputs = self.generator.apply({"params": state.g_ema_params, "batch_stats": state.g_batch_stats},
                                   batch["damaged"], batch["hole_mask"], train=False)
    completed = compose(outputs["completion"], batch["damaged"], batch["hole_mask"])
    return {"attention_maps": outputs.get("attention_maps"), "completed": completed}
