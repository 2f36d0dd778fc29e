"""The train state: one pytree holding everything a resumed run needs to continue bit for bit."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from faceinpaint_jax.models import build_discriminators, build_generator, local_window_size


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: updates applied so far
  g_params: Any
  g_ema_params: Any  # exponential moving average of g_params: what samples, evaluation and inpainting use
  g_batch_stats: Any
  d_params: Any
  d_batch_stats: Any
  g_opt_state: Any
  d_opt_state: Any
  rng: jax.Array  # typed PRNG key, advanced every step
  # Consecutive and total updates skipped for NaN/Inf, one pair per network: a discriminator whose
  # every update is skipped must stop the run even while the generator trains on.
  g_nonfinite_in_a_row: jax.Array  # int32
  g_nonfinite_total: jax.Array  # int32
  d_nonfinite_in_a_row: jax.Array  # int32
  d_nonfinite_total: jax.Array  # int32


def ema_decay_at(train_config, step):
  """Decay of the generator's weight average at `step`: min(d, (1 + t) / (10 + t)).

  The ramp (TensorFlow's num_updates rule) lets the average follow the fast early weights instead of
  dragging the random initialisation along for ~1/(1 − d) steps; d = 0 makes the average the weights.
  """
  decay = float(train_config.get("ema_decay", 0.0))
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def learning_rate_schedule(peak: float, train_config):
  if train_config.schedule == "cosine":
    horizon = train_config.get("decay_steps", 0) or train_config.steps
    return optax.warmup_cosine_decay_schedule(0.0, peak, max(train_config.warmup_steps, 1),
                                              max(horizon, train_config.warmup_steps + 1))
  if train_config.warmup_steps:
    return optax.linear_schedule(0.0, peak, train_config.warmup_steps)
  return peak


def make_optimizer(peak_learning_rate: float, train_config, b1: float) -> optax.GradientTransformation:
  """Adam (β2 from the config) behind optional global-norm clipping."""
  adam = optax.adam(learning_rate_schedule(peak_learning_rate, train_config), b1=b1, b2=train_config.b2)
  if train_config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), adam)
  return adam


def make_optimizers(config):
  t = config.train
  return (make_optimizer(t.g_learning_rate, t, t.b1),
          make_optimizer(t.d_learning_rate, t, t.get("d_b1", t.b1)))


def create_train_state(config, rng: jax.Array) -> TrainState:
  """Initialise G, both Ds and both optimizers from `rng` (a typed key)."""
  size = config.data.image_size
  window = local_window_size(config)
  g_key, d_key, state_key = jax.random.split(rng, 3)
  images = jnp.zeros((1, size, size, 3), jnp.float32)
  windows = jnp.zeros((1, window, window, 3), jnp.float32)
  hole_masks = jnp.zeros((1, size, size, 1), jnp.float32)
  g_vars = build_generator(config).init(g_key, images, hole_masks)
  d_vars = build_discriminators(config).init(d_key, images, windows)
  g_tx, d_tx = make_optimizers(config)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars["params"], g_ema_params=g_vars["params"], g_batch_stats=g_vars.get("batch_stats", {}),
      d_params=d_vars["params"], d_batch_stats=d_vars.get("batch_stats", {}),
      g_opt_state=g_tx.init(g_vars["params"]), d_opt_state=d_tx.init(d_vars["params"]),
      rng=state_key,
      g_nonfinite_in_a_row=jnp.zeros((), jnp.int32), g_nonfinite_total=jnp.zeros((), jnp.int32),
      d_nonfinite_in_a_row=jnp.zeros((), jnp.int32), d_nonfinite_total=jnp.zeros((), jnp.int32))


# Initialisation runs once per launch: XLA's optimising passes cost 13 s of the tiny config's 17 s init
# compile (11 of the quickstart's 18 s) on 2 cores and buy nothing for a program run once.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def initial_train_state(config, rng: jax.Array, sharding=None) -> TrainState:
  """`create_train_state(config, rng)` as one jitted program compiled with INIT_COMPILER_OPTIONS (its
  values differ from the optimised program's only in the last bit of a few initialisers' floats)."""
  init = jax.jit(lambda key: create_train_state(config, key), out_shardings=sharding)
  return init.lower(rng).compile(compiler_options=INIT_COMPILER_OPTIONS)(rng)
