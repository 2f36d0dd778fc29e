"""The training system: stage switch, NaN skipping, bitwise resume, multi-device and multi-process."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import free_port
from faceinpaint_jax import parallel
from faceinpaint_jax.checkpoint import load_raw
from faceinpaint_jax.data import InputPipeline
from faceinpaint_jax.models import crop_local_window
from faceinpaint_jax.train.loop import train_and_evaluate
from faceinpaint_jax.train.state import initial_train_state
from faceinpaint_jax.train.steps import Steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.py")


def _flat(state: dict) -> dict:
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    out[jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


def _assert_bitwise_equal(a: dict, b: dict):
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    assert fa[k].dtype == fb[k].dtype and np.array_equal(fa[k], fb[k]), k


@pytest.fixture
def steps_and_batch(tiny_config):
  mesh = parallel.make_mesh()
  steps = Steps(tiny_config).compile(parallel.replicated(mesh), parallel.batch_sharded(mesh))
  pipeline = InputPipeline(tiny_config, process_index=0, process_count=1)
  batch = parallel.global_batch(pipeline.batch(0), mesh)
  state = initial_train_state(tiny_config, jax.random.key(0), parallel.replicated(mesh))
  return steps, batch, state


def test_stage_switch_and_compile_counts(steps_and_batch):
  steps, batch, state = steps_and_batch
  d_before = jax.device_get(state.d_params)
  g_before = jax.device_get(state.g_params)
  for _ in range(2):
    state, metrics = steps.generator_step(state, batch, False)
  assert set(metrics) >= {"g/mse", "g/attention"} and "g/adversarial" not in metrics
  chex.assert_trees_all_equal(jax.device_get(state.d_params), d_before)  # stage 1: D untouched
  assert not np.array_equal(jax.device_get(state.g_params["completion"]["rgb_full"]["Conv_0"]["kernel"]),
                            g_before["completion"]["rgb_full"]["Conv_0"]["kernel"])
  for _ in range(2):
    state, d_metrics = steps.discriminator_step(state, batch)
    state, metrics = steps.generator_step(state, batch, True)
  assert {"g/adversarial", "g/multiscale"} <= set(metrics)
  assert {"d/global", "d/local", "d/real_prob_global", "d/fake_prob_local"} <= set(d_metrics)
  changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != b)),
                                   jax.device_get(state.d_params), d_before)
  assert all(jax.tree_util.tree_leaves(changed))
  assert int(state.step) == 4
  # One compile per stage for G, one for D: nothing recompiles per step.
  assert steps.generator_step._cache_size() == 2
  assert steps.discriminator_step._cache_size() == 1


def test_ema_of_generator_weights_follows_its_ramp(steps_and_batch, tiny_config):
  """g_ema ← d_t·g_ema + (1 − d_t)·g_new with d_t = min(d, (1 + t)/(10 + t)); D weights are not averaged."""
  steps, batch, state = steps_and_batch
  ema_before = jax.device_get(state.g_ema_params)
  for t in range(2):
    ema_before = jax.device_get(state.g_ema_params)
    state, _ = steps.generator_step(state, batch, False)
  decay = min(tiny_config.train.ema_decay, (1 + 1) / (10 + 1))
  expected = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema_before,
                                    jax.device_get(state.g_params))
  chex.assert_trees_all_close(jax.device_get(state.g_ema_params), expected, rtol=1e-6, atol=1e-7)
  kernel = lambda tree: np.asarray(tree["completion"]["rgb_full"]["Conv_0"]["kernel"])
  assert not np.allclose(kernel(state.g_ema_params), kernel(state.g_params))  # an average, not a copy
  from faceinpaint_jax.train.state import ema_decay_at
  tiny_config.train.ema_decay = 0.0
  assert float(ema_decay_at(tiny_config.train, 1000)) == 0.0  # off: the average is the weights


def test_nonfinite_batch_is_skipped(steps_and_batch):
  steps, batch, state = steps_and_batch
  before = jax.device_get(state)
  bad = dict(batch, image=batch["image"] * jnp.nan)
  state, metrics = steps.generator_step(state, bad, False)
  assert not bool(metrics["g/finite"]) and int(metrics["g/nonfinite_in_a_row"]) == 1
  chex.assert_trees_all_equal(jax.device_get(state.g_params), before.g_params)
  chex.assert_trees_all_equal(jax.device_get(state.g_opt_state), before.g_opt_state)
  state, metrics = steps.generator_step(state, batch, False)
  assert bool(metrics["g/finite"]) and int(metrics["g/nonfinite_in_a_row"]) == 0
  assert int(state.g_nonfinite_total) == 1 and int(state.d_nonfinite_total) == 0


def test_nonfinite_discriminator_update_is_skipped_and_counted_apart(steps_and_batch):
  """A NaN discriminator update is skipped and counted on D's counter; a good G step does not reset it."""
  steps, batch, state = steps_and_batch
  before = jax.device_get(state)
  bad = dict(batch, image=batch["image"] * jnp.nan)
  state, metrics = steps.discriminator_step(state, bad)
  assert not bool(metrics["d/finite"]) and int(metrics["d/nonfinite_in_a_row"]) == 1
  chex.assert_trees_all_equal(jax.device_get(state.d_params), before.d_params)
  chex.assert_trees_all_equal(jax.device_get(state.d_opt_state), before.d_opt_state)
  chex.assert_trees_all_equal(jax.device_get(state.d_batch_stats), before.d_batch_stats)
  state, metrics = steps.generator_step(state, batch, True)
  assert bool(metrics["g/finite"]) and int(state.g_nonfinite_in_a_row) == 0
  assert int(state.d_nonfinite_in_a_row) == 1 and int(state.d_nonfinite_total) == 1
  state, metrics = steps.discriminator_step(state, bad)
  assert int(metrics["d/nonfinite_in_a_row"]) == 2


def _generator_part(state):
  return jax.device_get((state.g_params, state.g_ema_params, state.g_batch_stats, state.g_opt_state))


def _discriminator_part(state):
  return jax.device_get((state.d_params, state.d_batch_stats, state.d_opt_state))


def test_discriminator_step_leaves_the_generator_bit_identical(steps_and_batch):
  steps, batch, state = steps_and_batch
  state, _ = steps.generator_step(state, batch, False)  # non-trivial G state (Adam moments, BN stats)
  g_before, d_before = _generator_part(state), _discriminator_part(state)
  assert jax.tree_util.tree_leaves(g_before[2]), "the tiny generator should have BatchNorm statistics"
  state, _ = steps.discriminator_step(state, batch)
  chex.assert_trees_all_equal(_generator_part(state), g_before)
  d_kernel = lambda part: np.asarray(part[0]["global_disc"]["conv_0"]["kernel"])
  assert not np.array_equal(d_kernel(_discriminator_part(state)), d_kernel(d_before))  # and D did move


def test_generator_step_leaves_the_discriminators_bit_identical(steps_and_batch):
  steps, batch, state = steps_and_batch
  state, _ = steps.discriminator_step(state, batch)  # non-trivial D state
  d_before = _discriminator_part(state)
  assert jax.tree_util.tree_leaves(d_before[1]), "the tiny discriminators should have BatchNorm statistics"
  g_params_before = jax.device_get(state.g_params)
  state, metrics = steps.generator_step(state, batch, True)  # stage 2: L_adv runs through both Ds
  assert "g/adversarial" in metrics
  chex.assert_trees_all_equal(_discriminator_part(state), d_before)
  kernel = lambda tree: np.asarray(tree["completion"]["rgb_full"]["Conv_0"]["kernel"])
  assert not np.array_equal(kernel(jax.device_get(state.g_params)), kernel(g_params_before))


def test_too_many_nonfinite_stops_with_checkpoint_intact(tiny_config, tmp_path, monkeypatch):
  tiny_config.train.max_nonfinite_in_a_row = 2
  tiny_config.train.steps = 4
  tiny_config.train.checkpoint_every = 1
  original = InputPipeline.example

  def poisoned(self, step, position):
    example = original(self, step, position)
    if step >= 1:
      example["image"] = example["image"] * np.nan
    return example

  monkeypatch.setattr(InputPipeline, "example", poisoned)
  code = train_and_evaluate(tiny_config, str(tmp_path))
  assert code == 3
  _, meta = load_raw(str(tmp_path))
  assert meta["step"] <= 3
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert lines[0]["step"] == 1 and np.isfinite(lines[0]["g/total"])


def test_discriminator_failing_every_update_stops_the_run(tiny_config, tmp_path, monkeypatch, capsys):
  """D's non-finite updates stop the run (exit 3) even though G's updates in between are finite."""
  from faceinpaint_jax.train import losses
  tiny_config.train.max_nonfinite_in_a_row = 2
  tiny_config.train.steps = 6
  tiny_config.train.stage1_steps = 1
  tiny_config.train.checkpoint_every = 1
  monkeypatch.setattr(losses, "discriminator_loss", lambda real, fake: jnp.nan * jnp.mean(real))
  code = train_and_evaluate(tiny_config, str(tmp_path))
  assert code == 3
  assert "2 non-finite discriminator updates in a row at step 2" in capsys.readouterr().err
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [l["step"] for l in lines] == [1, 2]
  assert lines[-1]["g/finite"] == 1.0 and lines[-1]["d/finite"] == 0.0
  _, meta = load_raw(str(tmp_path))
  assert meta["step"] == 2  # the last checkpoint written is intact and verifies


def test_bitwise_resume_across_the_stage_switch(tiny_config, tmp_path):
  """2K straight == K, stop, resume, K more — with the stage switch between K and 2K."""
  tiny_config.train.steps = 4
  tiny_config.train.stage1_steps = 3
  tiny_config.train.checkpoint_every = 2
  tiny_config.train.sample_every = 2
  # A cosine schedule with a fixed horizon: extending train.steps must not change past learning rates.
  tiny_config.train.schedule = "cosine"
  tiny_config.train.decay_steps = 4
  assert train_and_evaluate(tiny_config, str(tmp_path / "straight")) == 0
  tiny_config.train.steps = 2
  assert train_and_evaluate(tiny_config, str(tmp_path / "resumed")) == 0
  tiny_config.train.steps = 4
  assert train_and_evaluate(tiny_config, str(tmp_path / "resumed")) == 0
  straight, meta = load_raw(str(tmp_path / "straight"))
  resumed, meta_r = load_raw(str(tmp_path / "resumed"))
  assert meta["step"] == meta_r["step"] == 4
  _assert_bitwise_equal(straight, resumed)
  # Logging that people expect.
  lines = [json.loads(l) for l in open(tmp_path / "straight" / "metrics.jsonl")]
  assert [l["step"] for l in lines] == [1, 2, 3, 4]
  assert [l["stage"] for l in lines] == [1, 1, 1, 2]
  assert {"g/mse", "g/attention", "g/adversarial", "d/real_prob_global", "g/grad_norm",
          "images_per_sec", "cpu_seconds"} <= set(lines[-1])
  # CPU seconds per window: positive, and at most the window's wall time on every core (all threads).
  for l in lines:
    wall = tiny_config.train.batch_size / l["images_per_sec"]
    assert 0 < l["cpu_seconds"] <= wall * os.cpu_count() * 1.05 + 0.01, l
  assert os.path.exists(tmp_path / "straight" / "samples" / "step_0000004.png")
  assert os.listdir(tmp_path / "straight" / "tensorboard")
  assert json.load(open(tmp_path / "straight" / "config.json"))["train"]["steps"] == 4


def _train_script(workdir, prelude: str = "", **train) -> str:
  """A subprocess that trains the tiny config with `config.train` overrides after `prelude`."""
  lines = ["import sys", f"sys.path.insert(0, {REPO!r})", "import jax",
           "from faceinpaint_jax import parallel", "from faceinpaint_jax.config import load_config_file",
           "from faceinpaint_jax.train.loop import train_and_evaluate",
           f"config = load_config_file({TINY!r})", prelude,
           *[f"config.train.{k} = {v!r}" for k, v in train.items()],
           f"sys.exit(train_and_evaluate(config, {str(workdir)!r}))"]
  return "\n".join(lines)


FIVE_STEPS = dict(steps=5, stage1_steps=2, checkpoint_every=5, batch_size=4)


def _run_with_devices(devices: int, workdir: str):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  script = _train_script(workdir, f"assert jax.device_count() == {devices}, jax.devices()", **FIVE_STEPS)
  return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory) -> str:
  """The workdir of FIVE_STEPS on one device: the reference both data-parallel tests compare against."""
  workdir = str(tmp_path_factory.mktemp("one_device"))
  one = _run_with_devices(1, workdir)
  out = one.communicate()[0]
  assert one.returncode == 0, out[-3000:]
  return workdir


def _assert_close_relative(a: dict, b: dict, rtol: float):
  """‖a − b‖₂ ≤ rtol · ‖b‖₂ over the whole tree, and elementwise within rtol of each array's scale.

  Sums taken in another order differ in the last float32 bits; arrays that start at exactly zero
  (biases, the non-local output convs) carry such differences relative to their own tiny size, so the
  elementwise check is scaled by the largest magnitude in the tree rather than in the array.
  """
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  diff = np.sqrt(sum(np.sum((fa[k].astype(np.float64) - fb[k]) ** 2) for k in fa))
  norm = np.sqrt(sum(np.sum(fb[k].astype(np.float64) ** 2) for k in fb))
  scale = max(np.max(np.abs(v)) for v in fb.values())
  worst = max(np.max(np.abs(fa[k].astype(np.float64) - fb[k])) for k in fa)
  print(f"relative difference {diff / norm:.2e}; largest elementwise {worst:.2e} (scale {scale:.2e})")
  assert diff <= rtol * norm
  assert worst <= rtol * scale


@pytest.mark.slow
@pytest.mark.xdist_group("one_device_run")  # one worker makes the shared reference
def test_four_devices_match_one_device(tmp_path, one_device_run):
  four = _run_with_devices(4, str(tmp_path / "four"))
  out_four = four.communicate()[0]
  assert four.returncode == 0, out_four[-3000:]
  a, _ = load_raw(one_device_run)
  b, _ = load_raw(str(tmp_path / "four"))
  _assert_close_relative(b["g_params"], a["g_params"], 1e-5)
  _assert_close_relative(b["d_params"], a["d_params"], 1e-5)
  _assert_close_relative(b["g_batch_stats"], a["g_batch_stats"], 1e-5)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path):
  workdir = tmp_path / "run"
  script = _train_script(workdir, steps=100000, checkpoint_every=100000, log_every=1)
  proc = subprocess.Popen([sys.executable, "-c", script],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while time.time() < deadline:
    metrics = workdir / "metrics.jsonl"
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, out[-3000:]
  _, meta = load_raw(str(workdir))
  assert meta["step"] >= 2


@pytest.mark.slow
@pytest.mark.xdist_group("one_device_run")  # one worker makes the shared reference
def test_two_processes_match_one_device(tmp_path, one_device_run):
  port = free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen(
      [sys.executable, "-c", _train_script(tmp_path / "multi", "\n".join([
          f"config.parallel.coordinator_address = '127.0.0.1:{port}'",
          "config.parallel.num_processes = 2", f"config.parallel.process_id = {pid}",
          "parallel.initialize_distributed(config.parallel)",
          "assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()"]), **FIVE_STEPS)],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for pid in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  a, _ = load_raw(one_device_run)
  b, _ = load_raw(str(tmp_path / "multi"))
  _assert_close_relative(b["g_params"], a["g_params"], 1e-5)
  _assert_close_relative(b["d_params"], a["d_params"], 1e-5)


@pytest.mark.slow
def test_semantic_loss_is_trained_and_logged(tiny_config):
  """L_sem (Eq. 9) is logged at its value on the step's completions, enters g/total at its weight, and
  its gradient reaches the generator (and only the generator)."""
  from faceinpaint_jax.models import compose
  from faceinpaint_jax.parser import BiSeNet, load_parser_variables
  from faceinpaint_jax.train import losses
  tiny_config.loss.semantic = 0.5
  tiny_config.loss.semantic_images = 2
  parser_variables = load_parser_variables(tiny_config.loss.parser_weights, tiny_config.data.cache_dir)
  mesh = parallel.make_mesh()
  steps = Steps(tiny_config, parser_variables).compile(parallel.replicated(mesh), parallel.batch_sharded(mesh))
  pipeline = InputPipeline(tiny_config, process_index=0, process_count=1)
  batch = parallel.global_batch(pipeline.batch(0), mesh)
  state = initial_train_state(tiny_config, jax.random.key(0))
  outputs = steps.generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                                  batch["damaged"], train=True, mutable=["batch_stats"])[0]
  completed = compose(outputs["completion"], batch["damaged"], batch["hole_mask"])
  expected = losses.semantic_loss(lambda x: BiSeNet().apply(parser_variables, x), batch["image"][:2],
                                  completed[:2], tiny_config.loss.semantic_size)
  start = jax.tree_util.tree_map(jnp.copy, state)
  with_sem, metrics = steps.generator_step(state, batch, True)
  np.testing.assert_allclose(float(metrics["g/semantic"]), float(expected), rtol=1e-4)
  ramp = float(steps._stage2_ramp(start.step))
  others = sum(getattr(tiny_config.loss, k) * float(metrics[f"g/{k}"]) * (1.0 if k in losses.STAGE1_TERMS else ramp)
               for k in losses.STAGE2_TERMS if k != "semantic")
  np.testing.assert_allclose(float(metrics["g/total"]) - others, 0.5 * ramp * float(expected), rtol=1e-3)
  tiny_config.loss.semantic = 0.0
  plain = Steps(tiny_config).compile(parallel.replicated(mesh), parallel.batch_sharded(mesh))
  without, _ = plain.generator_step(start, batch, True)
  kernel = lambda s: np.asarray(s.g_params["completion"]["rgb_full"]["Conv_0"]["kernel"])
  assert not np.array_equal(kernel(with_sem), kernel(without))  # L_sem's gradient reached G
  chex.assert_trees_all_equal(jax.device_get(with_sem.d_params), jax.device_get(without.d_params))


def test_single_forward_stage2_step_equals_the_two_step_reference(steps_and_batch, tiny_config):
  """Algorithm 1's stage 2 with one G forward == D step then G step (two forwards), for 3 iterations."""
  steps, batch, state = steps_and_batch
  pipeline = InputPipeline(tiny_config, process_index=0, process_count=1)
  mesh = parallel.make_mesh()
  batches = [parallel.global_batch(pipeline.batch(s), mesh) for s in range(3)]
  # Start from a trained-a-little G, so the discriminator has something to tell apart.
  state, _ = steps.generator_step(state, batch, False)
  reference = jax.tree_util.tree_map(jnp.copy, state)
  d_before = jax.device_get(state.d_params)
  for b in batches:
    reference, d_metrics = steps.discriminator_step(reference, b)
    reference, g_metrics = steps.generator_step(reference, b, True)
  for b in batches:
    state, metrics = steps.adversarial_step(state, b)
  assert {"g/adversarial", "g/multiscale", "d/global", "d/local"} <= set(metrics)
  np.testing.assert_allclose(float(metrics["g/total"]), float(g_metrics["g/total"]), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["d/total"]), float(d_metrics["d/total"]), rtol=1e-5)
  for name in ("g_params", "g_ema_params", "g_batch_stats", "d_params", "d_batch_stats", "g_opt_state",
               "d_opt_state"):
    _assert_close_relative(getattr(state, name), getattr(reference, name), 1e-5)
  assert int(state.step) == int(reference.step) == 4
  # Both forms must actually move D (not two no-ops that trivially agree), and by the same amount.
  moved = np.asarray(state.d_params["global_disc"]["logit"]["kernel"]) - d_before["global_disc"]["logit"]["kernel"]
  assert np.max(np.abs(moved)) > 1e-4


def test_stage2_terms_ramp_in_linearly(tiny_config):
  tiny_config.train.stage1_steps = 10
  tiny_config.train.stage2_rampup_steps = 4
  steps = Steps(tiny_config)
  ramp = [float(steps._stage2_ramp(jnp.int32(s))) for s in (9, 10, 11, 13, 20)]
  assert ramp == [0.0, 0.25, 0.5, 1.0, 1.0]
  tiny_config.train.stage2_rampup_steps = 0
  assert Steps(tiny_config)._stage2_ramp(jnp.int32(10)) == 1.0


def test_unknown_config_key_is_one_plain_line():
  result = subprocess.run([sys.executable, "launch.py", "--config", TINY, "--workdir", "/nonexistent/run",
                           "--config.train.stepz=3"], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 2
  assert result.stderr == 'error: unknown config key in an override: stepz Did you mean "steps" instead of "stepz"?\n'


def test_hole_fill_weights_of_the_wrong_length_are_one_plain_line():
  result = subprocess.run([sys.executable, "launch.py", "--config", TINY, "--workdir", "/nonexistent/run",
                           "--config.data.hole_fill_weights=(1,1,3)"], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 2
  assert result.stderr.count("\n") == 1 and "data.hole_fill_weights=(1, 1, 3) needs five shares" in result.stderr



@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "configs"))
                                         if n.endswith(".py") and n != "parser.py"))  # test_parser has its own
def test_every_shipped_inpainting_config_passes_validation(name):
  """A config file whose key or value is wrong fails here, not minutes into a user's run."""
  from faceinpaint_jax.config import load_config_file, validate
  config = load_config_file(os.path.join(REPO, "configs", name))
  validate(config)
  assert 0 < config.train.stage1_steps <= config.train.steps

def test_r1_penalty_is_the_squared_input_gradient_of_each_discriminator(tiny_config):
  """loss.r1: each discriminator's R1 term is the batch mean of ‖∇ logit‖² with respect to its own
  input (checked against finite differences along the gradient), added as γ/2 to its loss."""
  mesh = parallel.make_mesh()
  tiny_config.loss.r1 = 2.0
  steps = Steps(tiny_config)
  state = initial_train_state(tiny_config, jax.random.key(0), parallel.replicated(mesh))
  batch = InputPipeline(tiny_config, process_index=0, process_count=1).batch(0)
  images, offsets = jnp.asarray(batch["image"]), jnp.asarray(batch["window_offset"])
  (_, _, _), (penalty_global, penalty_local) = steps._discriminate_with_r1(
      state.d_params, state.d_batch_stats, images, offsets)
  variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
  windows = crop_local_window(images, offsets, steps.window)

  def summed(which, images, windows):
    logits, _ = steps.discriminators.apply(variables, images, windows, train=True, mutable=["batch_stats"])
    return float(jnp.sum(logits[which]))

  batch_size = images.shape[0]
  for which, penalty, args in ((0, penalty_global, (images, windows)), (1, penalty_local, (images, windows))):
    grads = jax.grad(lambda i, w: jnp.sum(steps.discriminators.apply(
        variables, i, w, train=True, mutable=["batch_stats"])[0][which]), argnums=which)(*args)
    direction = grads / jnp.linalg.norm(grads)
    eps = 1e-2
    plus, minus = list(args), list(args)
    plus[which], minus[which] = args[which] + eps * direction, args[which] - eps * direction
    slope = (summed(which, *plus) - summed(which, *minus)) / (2 * eps)
    # Σ_b ‖∇_b‖² = ‖∇‖² of the batch-summed logit, whose norm is the slope along its own direction.
    np.testing.assert_allclose(float(penalty) * batch_size, slope ** 2, rtol=2e-2)
    assert float(penalty) > 0

  plain_config = tiny_config.copy_and_resolve_references()
  plain_config.loss.r1 = 0.0
  full_batch = parallel.global_batch(batch, mesh)
  with_r1 = Steps(tiny_config).compile(parallel.replicated(mesh), parallel.batch_sharded(mesh))
  without = Steps(plain_config).compile(parallel.replicated(mesh), parallel.batch_sharded(mesh))
  _, metrics = with_r1.discriminator_step(jax.tree_util.tree_map(jnp.copy, state), full_batch)
  _, plain = without.discriminator_step(jax.tree_util.tree_map(jnp.copy, state), full_batch)
  assert "d/r1_global" not in plain
  np.testing.assert_allclose(float(metrics["d/r1_global"]), float(penalty_global), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["d/total"]), float(plain["d/total"]) + 1.0 * (
      float(metrics["d/r1_global"]) + float(metrics["d/r1_local"])), rtol=1e-5)
