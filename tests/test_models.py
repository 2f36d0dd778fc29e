"""Shapes, identities and gradients of every network part."""

import functools
import itertools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceinpaint_jax.models import (build_discriminators, build_generator, compose,
                                    crop_local_window, local_window_offsets)
from faceinpaint_jax.models.attention import AttentiveRecurrentModule, AttentiveStep
from faceinpaint_jax.models.convlstm import ConvLSTMCell
from faceinpaint_jax.models.layers import SubpixelConvTranspose, strided_conv
from faceinpaint_jax.models import non_local
from faceinpaint_jax.models.non_local import NonLocalBlock, dot_product_attention
from faceinpaint_jax.models import local_window as lw
from faceinpaint_jax.config import base_config
from faceinpaint_jax.train.state import INIT_COMPILER_OPTIONS


def _randomize_zero_leaves(params, key):
  """Replace all-zero kernels (the non-local output convs start at 0) so every path carries gradient."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  leaves = [0.1 * jax.random.normal(k, x.shape) if x.ndim > 1 and not jnp.any(x) else x
            for k, x in zip(keys, leaves)]
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _nonlocal_numpy(x, params):
  """Plain double loop over positions, straight from Eq. 2 with the embedded-Gaussian f."""
  p = jax.tree_util.tree_map(np.asarray, params)
  conv = lambda t, name: t @ p[name]["kernel"][0, 0] + p[name].get("bias", 0.0)
  b, h, w, c = x.shape
  out = np.zeros_like(x)
  for n in range(b):
    flat = x[n].reshape(h * w, c)
    theta, phi, g = conv(flat, "theta"), conv(flat, "phi"), conv(flat, "g")
    y = np.zeros_like(g)
    for i in range(h * w):
      f = np.array([np.exp(theta[i] @ phi[j]) for j in range(h * w)])
      y[i] = sum(f[j] * g[j] for j in range(h * w)) / f.sum()
    out[n] = (flat + conv(y, "out")).reshape(h, w, c)
  return out


class TestNonLocal:

  def test_matches_numpy_double_loop(self):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 6)).astype(np.float32)
    block = NonLocalBlock()
    params = block.init(jax.random.key(0), x)["params"]
    params = _randomize_zero_leaves(params, jax.random.key(1))
    got = block.apply({"params": params}, x)
    chex.assert_trees_all_close(np.asarray(got), _nonlocal_numpy(x, params), rtol=1e-4, atol=1e-5)

  def test_identity_at_init(self):
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 32))
    block = NonLocalBlock()
    variables = block.init(jax.random.key(1), x)
    assert variables["params"]["theta"]["kernel"].shape == (1, 1, 32, 16)  # C/2 bottleneck
    chex.assert_trees_all_equal(block.apply(variables, x), x)

  def test_equivariant_to_pixel_permutation(self):
    x = jax.random.normal(jax.random.key(0), (1, 1, 24, 8))  # 1×24 image: a permutation of pixels
    block = NonLocalBlock()
    params = _randomize_zero_leaves(block.init(jax.random.key(1), x)["params"], jax.random.key(2))
    perm = np.random.default_rng(0).permutation(24)
    out = block.apply({"params": params}, x)
    out_perm = block.apply({"params": params}, x[:, :, perm])
    chex.assert_trees_all_close(out[:, :, perm], out_perm, rtol=1e-5, atol=1e-6)

  def test_kv_pool_attends_to_max_pooled_keys(self):
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    block = NonLocalBlock(kv_pool=2)
    params = _randomize_zero_leaves(block.init(jax.random.key(1), x)["params"], jax.random.key(2))
    p = jax.tree_util.tree_map(np.asarray, params)
    xn = np.asarray(x)[0]
    theta = xn @ p["theta"]["kernel"][0, 0] + p["theta"]["bias"]
    pool = lambda t: t.reshape(4, 2, 4, 2, -1).max(axis=(1, 3)).reshape(16, -1)
    phi = pool(xn @ p["phi"]["kernel"][0, 0])
    g = pool(xn @ p["g"]["kernel"][0, 0] + p["g"]["bias"])
    logits = theta.reshape(64, -1) @ phi.T
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    y = (weights / weights.sum(-1, keepdims=True)) @ g
    expected = xn.reshape(64, 4) + y @ p["out"]["kernel"][0, 0] + p["out"]["bias"]
    chex.assert_trees_all_close(block.apply({"params": params}, x)[0], expected.reshape(8, 8, 4),
                                rtol=1e-4, atol=1e-5)

  # (queries, keys, chunk): chunks that divide, that don't, one larger than the input, and fewer
  # keys than queries (kv_pool); the logits are scaled up so the softmax is far from uniform.
  @pytest.mark.parametrize("length,keys,chunk", [(64, 64, 16), (100, 100, 32), (37, 37, 64),
                                                 (100, 25, 32)])
  def test_chunked_equals_einsum(self, length, keys, chunk):
    k1, k2, k3 = jax.random.split(jax.random.key(length + keys), 3)
    q = 2.0 * jax.random.normal(k1, (2, length, 8))
    k, v = (jax.random.normal(kk, (2, keys, 8)) for kk in (k2, k3))
    ref = lambda *a: dot_product_attention(*a, impl="einsum")
    loss = lambda f: (lambda *a: jnp.sum(jnp.sin(f(*a))))
    # The per-image loop CPU takes, and the batched form other backends take.
    for chunked in (lambda *a: dot_product_attention(*a, impl="chunked", chunk_size=chunk),
                    lambda *a: non_local._attention_chunked(*a, chunk)):
      chex.assert_trees_all_close(chunked(q, k, v), ref(q, k, v), rtol=1e-4, atol=1e-6)
      chex.assert_trees_all_close(jax.grad(loss(chunked), argnums=(0, 1, 2))(q, k, v),
                                  jax.grad(loss(ref), argnums=(0, 1, 2))(q, k, v), rtol=1e-4, atol=1e-5)

  @pytest.mark.parametrize("length,chunked", [(64, False), (300, True)])
  def test_auto_on_cpu_chunks_when_there_is_more_than_one_chunk(self, length, chunked):
    q, k, v = (jax.random.normal(kk, (2, length, 8)) for kk in jax.random.split(jax.random.key(3), 3))
    auto = lambda *a: dot_product_attention(*a, impl="auto", chunk_size=128)
    assert ("custom_vjp" in str(jax.make_jaxpr(auto)(q, k, v))) == chunked
    chex.assert_trees_all_close(auto(q, k, v), dot_product_attention(q, k, v, impl="einsum"),
                                rtol=1e-4, atol=1e-6)

  def test_chunked_bfloat16_within_rounding_of_float32(self):
    q, k, v = (jax.random.normal(kk, (2, 96, 16)) for kk in jax.random.split(jax.random.key(7), 3))
    loss = lambda *a: jnp.sum(jnp.sin(dot_product_attention(*a, impl="chunked", chunk_size=40)))
    grads32 = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    grads16 = jax.grad(loss, argnums=(0, 1, 2))(*bf16)
    assert all(g.dtype == jnp.bfloat16 for g in grads16)
    for g16, g32 in zip(grads16, grads32):
      rel = jnp.linalg.norm(g16.astype(jnp.float32) - g32) / jnp.linalg.norm(g32)
      assert rel < 2e-2, rel


# Gradients of sin(conv) sum tens of terms of size ~5 whose cosines carry the forward pass's float32
# rounding, and XLA picks a different conv algorithm on another CPU: on an AMD EPYC one weight gradient
# near zero (0.0342) differed by 1.4e-5. A wrong stride, padding or phase errs by O(1), far above this.
GRAD_ATOL = 1e-4


@pytest.mark.parametrize("height,width,kernel,stride", [(8, 8, 4, 2), (5, 6, 4, 2), (7, 4, 3, 2),
                                                       (4, 5, 5, 3)])
def test_subpixel_conv_transpose_is_flax_conv_transpose(height, width, kernel, stride):
  x = jax.random.normal(jax.random.key(0), (2, height, width, 3))
  reference = nn.ConvTranspose(5, (kernel, kernel), strides=(stride, stride), padding="SAME",
                               use_bias=False)
  subpixel = SubpixelConvTranspose(5, (kernel, kernel), stride)
  variables = reference.init(jax.random.key(1), x)
  # Same parameter tree and the same initial values, so the two are one layer.
  chex.assert_trees_all_equal(subpixel.init(jax.random.key(1), x), variables)
  chex.assert_shape(subpixel.apply(variables, x), (2, height * stride, width * stride, 5))
  loss = lambda module: (lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))))
  chex.assert_trees_all_close(subpixel.apply(variables, x), reference.apply(variables, x),
                              rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(jax.grad(loss(subpixel), argnums=(0, 1))(variables, x),
                              jax.grad(loss(reference), argnums=(0, 1))(variables, x),
                              rtol=1e-4, atol=GRAD_ATOL)


@pytest.mark.parametrize("height,width,kernel,stride,padding", [
    (8, 8, 5, 2, "SAME"), (7, 8, 5, 2, "SAME"), (8, 5, 3, 2, "VALID"), (6, 6, 4, 3, "SAME"),
    (8, 8, 5, 2, ((1, 2), (0, 3))), (16, 16, 5, 2, "SAME")])
def test_strided_conv_is_lax_conv(height, width, kernel, stride, padding):
  x = jax.random.normal(jax.random.key(0), (2, height, width, 3))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 4))
  numbers = ("NHWC", "HWIO", "NHWC")
  reference = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride,) * 2, padding,
                                                        dimension_numbers=numbers)
  ours = lambda x, w: strided_conv(x, w, (stride,) * 2, padding, dimension_numbers=numbers)
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
  chex.assert_trees_all_close(ours(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(jax.grad(loss(ours), argnums=(0, 1))(x, w),
                              jax.grad(loss(reference), argnums=(0, 1))(x, w), rtol=1e-4,
                              atol=GRAD_ATOL)


def test_convlstm_cell_equations():
  cell = ConvLSTMCell(features=2)
  x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
  carry = (jax.random.normal(jax.random.key(1), (1, 4, 4, 2)),
           jax.random.normal(jax.random.key(2), (1, 4, 4, 2)))
  params = cell.init(jax.random.key(3), carry, x)["params"]
  (c, h), out = cell.apply({"params": params}, carry, x)
  gates = nn.Conv(8, (3, 3), padding="SAME").apply({"params": params["gates"]},
                                                   jnp.concatenate([x, carry[1]], -1))
  i, f, o, g = np.split(np.asarray(gates), 4, axis=-1)
  sig = lambda t: 1 / (1 + np.exp(-t))
  c_ref = sig(f) * np.asarray(carry[0]) + sig(i) * np.tanh(g)
  chex.assert_trees_all_close((c, h, out), (c_ref, sig(o) * np.tanh(c_ref), sig(o) * np.tanh(c_ref)),
                              rtol=1e-5, atol=1e-6)


def test_scan_equals_unrolled_python_loop():
  module = AttentiveRecurrentModule(num_steps=3, features=4, num_resblocks=1)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  variables = module.init(jax.random.key(1), x)
  variables = {"params": _randomize_zero_leaves(variables["params"], jax.random.key(2)),
               "batch_stats": variables["batch_stats"]}
  scanned = module.apply(variables, x, train=False)

  step = AttentiveStep(features=4, num_resblocks=1)
  carry = (ConvLSTMCell.initial_carry((2, 8, 8), 4), jnp.full((2, 8, 8, 1), 0.5))
  maps = []
  for t in range(3):
    stats_t = jax.tree_util.tree_map(lambda s: s[t], variables["batch_stats"]["step"])
    carry, a = step.apply({"params": variables["params"]["step"], "batch_stats": stats_t},
                          carry, x, False)
    maps.append(a)
  chex.assert_trees_all_close(scanned, jnp.stack(maps), rtol=1e-5, atol=1e-6)
  assert jnp.all((scanned > 0) & (scanned < 1))


@pytest.mark.parametrize("size,batch", list(itertools.product([64, 128], [1, 3])))
def test_generator_and_discriminator_shapes(size, batch):
  config = base_config()
  config.data.image_size = size
  generator, discs = build_generator(config), build_discriminators(config)
  window = size // 2
  images = jnp.zeros((batch, size, size, 3))
  windows = jnp.zeros((batch, window, window, 3))
  # eval_shape: full-size shapes and dtypes without spending seconds of CPU per case.
  g_vars = jax.eval_shape(generator.init, jax.random.key(0), images)
  out = jax.eval_shape(generator.apply, g_vars, images)
  chex.assert_shape(out["attention_maps"], (3, batch, size, size, 1))
  chex.assert_shape(out["completion"], (batch, size, size, 3))
  chex.assert_shape(out["multiscale"], [(batch, size // 4, size // 4, 3),
                                        (batch, size // 2, size // 2, 3), (batch, size, size, 3)])
  chex.assert_type([out["completion"], out["attention_maps"]], jnp.float32)
  d_vars = jax.eval_shape(discs.init, jax.random.key(0), images, windows)
  logits = jax.eval_shape(discs.apply, d_vars, images, windows)
  chex.assert_shape(logits, [(batch,), (batch,)])
  for leaf in jax.tree_util.tree_leaves((g_vars["params"], d_vars["params"])):
    assert leaf.dtype == jnp.float32


_TINY_CACHE = {}


def _init(model, *args):
  """`model.init(*args)` as the trainer initialises: one program without XLA's optimising passes (an
  eager generator init takes 25 s on 2 cores, this 3 s)."""
  return jax.jit(model.init).lower(*args).compile(compiler_options=INIT_COMPILER_OPTIONS)(*args)


def _tiny_models(tiny_config):
  """Initialised once per dtype and reused (per worker)."""
  cache_key = tiny_config.model.dtype
  if cache_key not in _TINY_CACHE:
    _TINY_CACHE[cache_key] = _init_tiny_models(tiny_config)
  return _TINY_CACHE[cache_key]


def _init_tiny_models(tiny_config):
  size = tiny_config.data.image_size
  generator, discs = build_generator(tiny_config), build_discriminators(tiny_config)
  images = jax.random.uniform(jax.random.key(0), (3, size, size, 3), minval=-1, maxval=1)
  windows = images[:, : size // 2, : size // 2]
  g_vars = _init(generator, jax.random.key(1), images)
  d_vars = _init(discs, jax.random.key(2), images, windows)
  return generator, discs, images, windows, g_vars, d_vars


def test_generator_runs_and_outputs_are_in_range(tiny_config):
  generator, _, images, _, g_vars, _ = _tiny_models(tiny_config)
  out = jax.jit(generator.apply)(g_vars, images)
  assert jnp.all(jnp.abs(out["completion"]) <= 1)
  assert jnp.all((out["attention_maps"] >= 0) & (out["attention_maps"] <= 1))


def test_every_parameter_gets_a_finite_nonzero_gradient(tiny_config):
  generator, discs, images, windows, g_vars, d_vars = _tiny_models(tiny_config)
  g_params = _randomize_zero_leaves(g_vars["params"], jax.random.key(5))
  d_params = _randomize_zero_leaves(d_vars["params"], jax.random.key(6))

  def g_loss(params):
    out, _ = generator.apply({"params": params, "batch_stats": g_vars["batch_stats"]}, images,
                             train=True, mutable=["batch_stats"])
    return (jnp.sum(out["attention_maps"] ** 2) + sum(jnp.sum(jnp.sin(3 * o)) for o in out["multiscale"]))

  def d_loss(params):
    (gl, ll), _ = discs.apply({"params": params, "batch_stats": d_vars["batch_stats"]}, images, windows,
                              train=True, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(gl)) + jnp.sum(jnp.sin(ll))

  for grads in (jax.jit(jax.grad(g_loss))(g_params), jax.jit(jax.grad(d_loss))(d_params)):
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
      assert jnp.all(jnp.isfinite(g)), path
      assert jnp.any(g != 0), jax.tree_util.keystr(path)



@pytest.mark.parametrize("trained_by_completion", [True, False])
def test_the_completion_loss_reaches_the_attentive_module_only_end_to_end(tiny_config, trained_by_completion):
  """model.attention_trained_by_completion=False detaches A_N at the completion network's input: a loss
  on the completion alone gives the attentive module's parameters exactly zero gradient, and the same
  forward values."""
  generator, _, images, _, g_vars, _ = _tiny_models(tiny_config)
  tiny_config.model.attention_trained_by_completion = trained_by_completion
  try:
    chosen = build_generator(tiny_config)
  finally:
    tiny_config.model.attention_trained_by_completion = True
  params = _randomize_zero_leaves(g_vars["params"], jax.random.key(5))

  def completion_loss(model, params):
    out = model.apply({"params": params, "batch_stats": g_vars["batch_stats"]}, images)
    return jnp.sum(jnp.sin(3 * out["completion"]))

  grads = jax.jit(jax.grad(functools.partial(completion_loss, chosen)))(params)
  end_to_end = jax.jit(jax.grad(functools.partial(completion_loss, generator)))(params)
  attention_grads = jax.tree_util.tree_leaves(grads["attention"])
  assert all(jnp.all(jnp.isfinite(g)) for g in attention_grads)
  assert any(jnp.any(g != 0) for g in attention_grads) == trained_by_completion
  chex.assert_trees_all_close(grads["completion"], end_to_end["completion"], rtol=1e-5, atol=1e-6)
  reference = generator.apply({"params": params, "batch_stats": g_vars["batch_stats"]}, images)
  chex.assert_trees_all_equal(chosen.apply({"params": params, "batch_stats": g_vars["batch_stats"]}, images),
                              reference)

def test_train_mode_updates_batch_stats_eval_is_deterministic(tiny_config):
  generator, _, images, _, g_vars, _ = _tiny_models(tiny_config)
  apply = jax.jit(generator.apply, static_argnames=("train", "mutable"))
  _, updates = apply(g_vars, images, train=True, mutable=("batch_stats",))
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), g_vars["batch_stats"],
                                   updates["batch_stats"])
  assert all(jax.tree_util.tree_leaves(changed))
  first = apply(g_vars, images)
  second = apply(g_vars, images)
  chex.assert_trees_all_equal(first, second)


def test_eval_outputs_for_one_face_do_not_depend_on_the_rest_of_the_batch(tiny_config):
  """Each face is completed and judged on its own: nothing (a non-local einsum over the wrong axis,
  batch statistics in eval mode) mixes the faces of a batch."""
  generator, discs, images, windows, g_vars, d_vars = _tiny_models(tiny_config)
  # Away from the initialisation, where the non-local blocks' zero-initialised output convs hide them.
  perturb = lambda tree, seed: jax.tree_util.tree_map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(seed), x.shape, x.dtype), tree)
  g_vars = dict(g_vars, params=perturb(g_vars["params"], 3))
  d_vars = dict(d_vars, params=perturb(d_vars["params"], 4))
  g_apply, d_apply = jax.jit(generator.apply), jax.jit(discs.apply)
  alone = g_apply(g_vars, images[:1])
  others = images.at[1:].set(-images[1:])
  together = jax.tree_util.tree_map(lambda x: x[:1] if x.ndim and x.shape[0] == 3 else x[:, :1],
                                    g_apply(g_vars, others))
  chex.assert_trees_all_close(together, alone, rtol=1e-5, atol=1e-6)
  d_alone = d_apply(d_vars, images[:1], windows[:1])
  d_together = d_apply(d_vars, others, windows.at[1:].set(-windows[1:]))
  chex.assert_trees_all_close(tuple(x[:1] for x in d_together), tuple(d_alone), rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params(tiny_config):
  tiny_config.model.dtype = "bfloat16"
  generator, _, images, _, g_vars, _ = _tiny_models(tiny_config)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(g_vars["params"]))
  out = jax.jit(generator.apply)(g_vars, images)
  tiny_config.model.dtype = "float32"
  ref = jax.jit(build_generator(tiny_config).apply)(g_vars, images)
  chex.assert_trees_all_close(out["completion"], ref["completion"], atol=5e-2)


def test_compose_keeps_known_pixels_bit_exactly():
  key = jax.random.key(0)
  damaged = jax.random.uniform(key, (2, 16, 16, 3), minval=-1, maxval=1)
  completion = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
  mask = jnp.zeros((2, 16, 16, 1)).at[:, 4:9, 3:12].set(1.0)
  out = compose(completion, damaged, mask)
  known = np.broadcast_to(np.asarray(mask) == 0, out.shape)
  np.testing.assert_array_equal(np.asarray(out)[known], np.asarray(damaged)[known])
  np.testing.assert_array_equal(np.asarray(out)[~known], np.asarray(completion)[~known])


def test_local_window_contains_random_holes():
  rng = np.random.default_rng(0)
  size, window = 128, 64
  masks = np.zeros((200, size, size, 1), np.float32)
  for m in masks:
    h, w = rng.integers(8, window + 1, size=2)
    y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    m[y:y + h, x:x + w] = 1
  offsets = jax.jit(local_window_offsets, static_argnums=1)(masks, window)
  np.testing.assert_array_equal(offsets, lw.local_window_offsets(masks, window, xp=np))
  crops = crop_local_window(masks, offsets, window)
  chex.assert_shape(crops, (200, window, window, 1))
  # Every hole pixel landed inside its window.
  np.testing.assert_array_equal(np.sum(crops, axis=(1, 2, 3)), masks.sum(axis=(1, 2, 3)))
  assert np.all((offsets >= 0) & (offsets <= size - window))


def test_spectral_norm_discriminators_are_lipschitz_normalised(tiny_config):
  tiny_config.model.spectral_norm = True
  tiny_config.model.disc_batchnorm = False
  discs = build_discriminators(tiny_config)
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  windows = images[:, :16, :16]
  variables = _init(discs, jax.random.key(1), images, windows)
  # Power-iteration state lives in batch_stats; in training it is updated, in eval it is not.
  assert set(variables["batch_stats"]["global_disc"]["SpectralNorm_0"]) == {"conv_0/kernel/sigma",
                                                                           "conv_0/kernel/u"}
  (logits, _), updates = discs.apply(variables, images, windows, train=True, mutable=["batch_stats"])
  for _ in range(20):  # power iteration converges to the largest singular value
    _, updates = discs.apply({"params": variables["params"], **updates}, images, windows, train=True,
                             mutable=["batch_stats"])
  kernel = variables["params"]["global_disc"]["conv_0"]["kernel"]
  sigma = updates["batch_stats"]["global_disc"]["SpectralNorm_0"]["conv_0/kernel/sigma"]
  np.testing.assert_allclose(sigma, np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]),
                                                  compute_uv=False)[0], rtol=1e-2)


def test_baseline_without_attentive_module_is_given_the_hole_mask(tiny_config):
  """model.attentive=False: no attention parameters or maps, and the mask channel steers the output."""
  tiny_config.model.attentive = False
  generator = build_generator(tiny_config)
  size = tiny_config.data.image_size
  images = jax.random.uniform(jax.random.key(0), (2, size, size, 3), minval=-1, maxval=1)
  hole = jnp.zeros((2, size, size, 1)).at[:, 8:20, 8:20].set(1.0)
  variables = _init(generator, jax.random.key(1), images, hole)
  assert set(variables["params"]) == {"completion"}
  out = jax.jit(generator.apply)(variables, images, hole)
  assert "attention_maps" not in out
  chex.assert_shape(out["completion"], (2, size, size, 3))
  other = jax.jit(generator.apply)(variables, images, jnp.zeros_like(hole))
  assert float(jnp.max(jnp.abs(out["completion"] - other["completion"]))) > 1e-4
  with pytest.raises(ValueError, match="hole mask"):
    generator.apply(variables, images)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_generator_without_batchnorm_has_no_running_statistics(tiny_config, norm):
  """Train and eval mode compute the same function when the generator has no BatchNorm."""
  tiny_config.model.norm = norm
  generator = build_generator(tiny_config)
  size = tiny_config.data.image_size
  images = jax.random.uniform(jax.random.key(0), (2, size, size, 3), minval=-1, maxval=1)
  variables = _init(generator, jax.random.key(1), images)
  assert "batch_stats" not in variables
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
  assert not any("BatchNorm" in n for n in names)
  assert any("GroupNorm" in n for n in names) == (norm == "group")
  train_out, _ = generator.apply(variables, images, train=True, mutable=["batch_stats"])
  chex.assert_trees_all_close(train_out, generator.apply(variables, images, train=False), rtol=1e-6,
                              atol=1e-6)


def test_generator_without_non_local_blocks(tiny_config):
  tiny_config.model.non_local = False
  generator = build_generator(tiny_config)
  size = tiny_config.data.image_size
  variables = jax.eval_shape(generator.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
  assert not any("non_local" in n for n in names)
  tiny_config.model.non_local = True
  variables = jax.eval_shape(build_generator(tiny_config).init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])}
  assert sum("non_local" in n and n.endswith("['out']['kernel']") for n in names) == 3


def test_attention_downsample_gives_full_size_maps(tiny_config):
  """The attentive module runs on the 2×-average-pooled image; its maps are resized back bilinearly."""
  import flax.linen as nn
  from faceinpaint_jax.models.attention import AttentiveRecurrentModule
  tiny_config.model.attention_downsample = 2
  generator = build_generator(tiny_config)
  size, steps = tiny_config.data.image_size, tiny_config.model.attention_steps
  images = jax.random.uniform(jax.random.key(0), (2, size, size, 3), minval=-1, maxval=1)
  variables = _init(generator, jax.random.key(1), images)
  out = generator.apply(variables, images)
  chex.assert_shape(out["attention_maps"], (steps, 2, size, size, 1))
  m = tiny_config.model
  module = AttentiveRecurrentModule(num_steps=steps, features=m.attention_features,
                                    num_resblocks=m.attention_resblocks, nonlocal_kv_pool=m.attention_kv_pool)
  small = module.apply({"params": variables["params"]["attention"],
                        "batch_stats": variables["batch_stats"]["attention"]},
                       nn.avg_pool(images, (2, 2), strides=(2, 2)))
  chex.assert_shape(small, (steps, 2, size // 2, size // 2, 1))
  expected = jax.image.resize(small, (steps, 2, size, size, 1), method="bilinear")
  chex.assert_trees_all_close(out["attention_maps"], expected, rtol=1e-5, atol=1e-6)


def test_attention_space_to_depth_folds_blocks_in_and_unfolds_maps_out(tiny_config):
  """With `attention_sampling="space_to_depth"` the module gets each 2×2 block of pixels as one
  position's 12 channels and its 4 map channels at a position are that block's four pixels."""
  tiny_config.model.attention_downsample = 2
  tiny_config.model.attention_sampling = "space_to_depth"
  generator = build_generator(tiny_config)
  size, steps = tiny_config.data.image_size, tiny_config.model.attention_steps
  images = jax.random.uniform(jax.random.key(0), (2, size, size, 3), minval=-1, maxval=1)
  variables = _init(generator, jax.random.key(1), images)
  assert variables["params"]["attention"]["step"]["stem"]["kernel"].shape[2] == 4 * 3 + 4
  out = generator.apply(variables, images)
  chex.assert_shape(out["attention_maps"], (steps, 2, size, size, 1))
  m = tiny_config.model
  module = AttentiveRecurrentModule(num_steps=steps, features=m.attention_features,
                                    num_resblocks=m.attention_resblocks, nonlocal_kv_pool=m.attention_kv_pool,
                                    map_channels=4)
  folded = images.reshape(2, size // 2, 2, size // 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
      2, size // 2, size // 2, 12)
  small = module.apply({"params": variables["params"]["attention"],
                        "batch_stats": variables["batch_stats"]["attention"]}, folded)
  chex.assert_shape(small, (steps, 2, size // 2, size // 2, 4))
  # Block (i, j)'s channel 2·p + q is pixel (2i + p, 2j + q).
  for p, q in itertools.product(range(2), range(2)):
    chex.assert_trees_all_close(out["attention_maps"][:, :, p::2, q::2, 0], small[..., 2 * p + q],
                                rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sampling", ["average", "space_to_depth"])
def test_attention_sampling_sees_pixels_inside_a_block_only_when_folded(tiny_config, sampling):
  """Swapping two pixels inside a 2×2 block is invisible to the average-pooled module (the same maps,
  bit for bit) and changes the folded module's maps: what lets it see a seam or a fill's grain."""
  tiny_config.model.attention_downsample = 2
  tiny_config.model.attention_sampling = sampling
  generator = build_generator(tiny_config)
  size = tiny_config.data.image_size
  images = jax.random.uniform(jax.random.key(0), (1, size, size, 3), minval=-1, maxval=1)
  swapped = images.at[0, 4, 4].set(images[0, 5, 5]).at[0, 5, 5].set(images[0, 4, 4])
  variables = _init(generator, jax.random.key(1), images)
  maps = generator.apply(variables, images)["attention_maps"]
  maps_swapped = generator.apply(variables, swapped)["attention_maps"]
  difference = float(jnp.max(jnp.abs(maps - maps_swapped)))
  if sampling == "average":
    assert difference == 0.0
  else:
    assert difference > 1e-4


@pytest.mark.parametrize("mode", ["bilinear", "resize_conv", "transpose"])
def test_upsample_modes(mode):
  from faceinpaint_jax.models.completion import Upsample2x
  x = jnp.ones((1, 4, 4, 3))
  layer = Upsample2x(5, mode, norm="none")
  variables = layer.init(jax.random.key(0), x, False)
  y = layer.apply(variables, x, False)
  chex.assert_shape(y, (1, 8, 8, 5))
  # A constant input: the resize modes give a constant interior; the transposed conv's two row phases
  # use different kernel taps, so its output alternates — the stripes the bilinear mode avoids.
  rows = y[0, 2:6, 3, 0]
  if mode == "transpose":
    assert float(jnp.abs(rows[0] - rows[1])) > 1e-3
  else:
    assert float(jnp.max(rows) - jnp.min(rows)) < 1e-5


def test_attentive_generator_never_reads_the_true_hole_mask(tiny_config):
  """The paper's model finds the hole itself: the mask the trainer passes along must not change a thing."""
  generator, _, images, _, g_vars, _ = _tiny_models(tiny_config)
  size = tiny_config.data.image_size
  hole = jnp.zeros((3, size, size, 1)).at[:, 4:12, 4:12].set(1.0)
  apply = jax.jit(generator.apply)
  chex.assert_trees_all_equal(apply(g_vars, images, hole), apply(g_vars, images, 1.0 - hole))
