"""Stage-2 train step (discriminator step + generator step) throughput and utilisation.

  python benchmarks/train_step.py --config configs/celeba128.py [--batch 8] [--dtype bfloat16]

Prints one JSON line: images/s, compile seconds, FLOPs per image (XLA cost analysis of both compiled
steps), achieved FLOP/s divided by the FLOP/s of a large matmul measured in the same process (float32 on
CPU, bfloat16 on GPU), and peak memory.
"""

import argparse
import json
import time

import common
import jax
import numpy as np

from faceinpaint_jax import parallel
from faceinpaint_jax.config import load_config_file
from faceinpaint_jax.train.state import create_train_state
from faceinpaint_jax.train.steps import Steps


def _reference_flops(config, parser_variables, rep, shard, state, batch) -> float:
  reference = config.copy_and_resolve_references()
  reference.model.nonlocal_impl = "einsum"
  ref_steps = Steps(reference, parser_variables).compile(rep, shard)
  return (common.lowered_flops(ref_steps.discriminator_step.lower(state, batch))
          + common.lowered_flops(ref_steps.generator_step.args[0].lower(
              state, batch, ref_steps.generator_step.args[1], True)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", required=True)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--dtype", default=None, help="model.dtype override (float32 | bfloat16)")
  ap.add_argument("--nonlocal-impl", default=None)
  ap.add_argument("--semantic", type=float, default=None, help="loss.semantic override (needs the parser)")
  ap.add_argument("--parser-weights", default="", help="79999_iter.pth or converted .npz for L_sem")
  ap.add_argument("--flops-per-image", type=float, default=None,
                  help="use this count (e.g. from a CPU run of this script) instead of analysing here")
  ap.add_argument("--iters", type=int, default=3)
  args = ap.parse_args()
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
  state = jax.jit(lambda k: create_train_state(config, k), out_shardings=rep)(jax.random.key(0))
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

  d_stats = common.compiled_stats(steps.discriminator_step, state, batch)
  g_jit = steps.generator_step.args[0]
  g_stats = common.compiled_stats(g_jit, state, batch, steps.generator_step.args[1], True)
  # FLOPs are counted on the einsum formulation: XLA's cost analysis sees a chunked loop body once and
  # a cuDNN kernel not at all, so the fused programs would under-report the work they do.
  if args.flops_per_image:
    flops = args.flops_per_image * args.batch
  else:
    flops = _reference_flops(config, parser_variables, rep, shard, state, batch)

  def one_step(state):
    state, _ = steps.discriminator_step(state, batch)
    state, metrics = steps.generator_step(state, batch, True)
    return state, metrics

  # The yardstick is measured before and after the timed steps, and the better kept.
  matmul = common.matmul_flops_per_s()
  state, _ = one_step(state)  # warm-up (compiles through the cache)
  jax.block_until_ready(state)
  times = []
  for _ in range(args.iters):
    start = time.perf_counter()
    state, metrics = one_step(state)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  seconds = sorted(times)[len(times) // 2]
  matmul = max(matmul, common.matmul_flops_per_s())
  peak = max(filter(None, [d_stats["peak_bytes"], g_stats["peak_bytes"]]), default=None)
  print(json.dumps({
      "benchmark": "train_step_stage2", "config": args.config, "batch": args.batch,
      "dtype": config.model.dtype, "nonlocal_impl": config.model.nonlocal_impl,
      "semantic": config.loss.semantic, "seconds_per_step": seconds, "images_per_s": args.batch / seconds,
      "compile_s": d_stats["compile_s"] + g_stats["compile_s"], "flops_per_image": flops / args.batch,
      "achieved_flops_per_s": flops / seconds, "matmul_flops_per_s": matmul,
      "utilisation": flops / seconds / matmul, "peak_bytes_compiled": peak,
      "peak_bytes_device": common.device_peak_bytes(), "machine": common.machine()}))


if __name__ == "__main__":
  main()
