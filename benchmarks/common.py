"""Shared helpers for the benchmark scripts: timing, compiled-program statistics, a matmul yardstick."""

from __future__ import annotations

import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def machine() -> dict:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count(),
          "cpu_count": os.cpu_count(), "jax": jax.__version__, "python": platform.python_version()}


def time_call(fn, *args, warmup: int = 1, iters: int = 5) -> float:
  """Median seconds of `fn(*args)` (blocking on its outputs) after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def compiled_stats(jitted, *args) -> dict:
  """Compile time, FLOPs (XLA cost analysis) and peak buffer bytes (XLA memory analysis)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  memory = compiled.memory_analysis()
  peak = None
  if memory is not None:
    peak = int(memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
               - memory.alias_size_in_bytes)
  return {"compile_s": seconds, "flops": float(cost.get("flops", 0.0)), "peak_bytes": peak,
          "compiled": compiled}


def matmul_flops_per_s(dtype=None) -> float:
  """FLOP/s of a large square matmul in this process: the yardstick for utilisation.

  The best of its timed runs: the machine's matmul capability, so a slow moment on a shared host
  lowers the measured step, not the yardstick it is divided by.
  """
  on_gpu = jax.default_backend() == "gpu"
  n = 8192 if on_gpu else 2048
  dtype = dtype or (jnp.bfloat16 if on_gpu else jnp.float32)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(f(a, b))
  best = float("inf")
  for _ in range(10):
    start = time.perf_counter()
    jax.block_until_ready(f(a, b))
    best = min(best, time.perf_counter() - start)
  return 2.0 * n ** 3 / best


def device_peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def add_stage2_arguments(ap) -> None:
  ap.add_argument("--config", required=True)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--dtype", default=None, help="model.dtype override (float32 | bfloat16)")
  ap.add_argument("--nonlocal-impl", default=None)
  ap.add_argument("--semantic", type=float, default=None, help="loss.semantic override (needs the parser)")
  ap.add_argument("--parser-weights", default="", help="79999_iter.pth or converted .npz for L_sem")


def stage2_setup(args):
  """Config, parser variables, compiled Steps, a fresh state and a synthetic batch for a stage-2 step."""
  import numpy as np

  from faceinpaint_jax import parallel
  from faceinpaint_jax.config import load_config_file
  from faceinpaint_jax.train.state import initial_train_state
  from faceinpaint_jax.train.steps import Steps

  config = load_config_file(args.config)
  config.train.batch_size = args.batch
  if args.dtype:
    config.model.dtype = args.dtype
  if args.nonlocal_impl:
    config.model.nonlocal_impl = args.nonlocal_impl
  if args.semantic is not None:
    config.loss.semantic = args.semantic
  parser_variables = None
  if config.loss.semantic > 0:
    from faceinpaint_jax.parser import load_parser_variables
    parser_variables = load_parser_variables(args.parser_weights)
  mesh = parallel.make_mesh()
  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  steps = Steps(config, parser_variables).compile(rep, shard)
  state = initial_train_state(config, jax.random.key(0), rep)
  size = config.data.image_size
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype(np.float32)
  hole = np.zeros((args.batch, size, size, 1), np.float32)
  hole[:, size // 4: size // 2, size // 4: size // 2] = 1
  window = int(round(size * config.data.local_window_fraction))
  batch = parallel.global_batch({
      "image": image, "damaged": np.where(hole > 0, 1.0, image).astype(np.float32), "hole_mask": hole,
      "window_offset": np.full((args.batch, 2), (size - window) // 2, np.int32),
      "index": np.arange(args.batch, dtype=np.int32)}, mesh)
  return config, parser_variables, steps, state, batch, (rep, shard)


def lowered_flops(lowered) -> float:
  """FLOPs of a lowered program: from the HLO where the backend offers it, else after compiling it."""
  cost = lowered.cost_analysis()
  if cost is None:
    # GPU backends analyse compiled programs only, and compiling the einsum reference there autotunes
    # with (HW)²-sized buffers: take the count from a CPU run instead (--flops-per-image).
    return float("nan")
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", 0.0))
