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
  common.add_stage2_arguments(ap)
  ap.add_argument("--flops-per-image", type=float, default=None,
                  help="use this count (e.g. from a CPU run of this script) instead of analysing here")
  ap.add_argument("--iters", type=int, default=3)
  args = ap.parse_args()
  config, parser_variables, steps, state, batch, (rep, shard) = common.stage2_setup(args)

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
