"""Stage-2 train step (D update then G update, one generator forward) throughput and utilisation.

  python benchmarks/train_step.py --config configs/celeba128.py [--batch 8] [--dtype bfloat16]

Prints one JSON line: images/s, compile seconds, FLOPs per image (XLA cost analysis of the compiled
step), achieved FLOP/s divided by the FLOP/s of a large matmul measured in the same process (float32 on
CPU, bfloat16 on GPU), and peak memory; and, timed in the same process, the images/s of the
two-forward form (a discriminator step, then a generator step that runs the generator again).
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
  return common.lowered_flops(ref_steps.adversarial_step.args[0].lower(
      state, batch, ref_steps.adversarial_step.args[1]))


def main():
  ap = argparse.ArgumentParser()
  common.add_stage2_arguments(ap)
  ap.add_argument("--flops-per-image", type=float, default=None,
                  help="use this count (e.g. from a CPU run of this script) instead of analysing here")
  ap.add_argument("--iters", type=int, default=3)
  args = ap.parse_args()
  config, parser_variables, steps, state, batch, (rep, shard) = common.stage2_setup(args)

  step_stats = common.compiled_stats(steps.adversarial_step.args[0], state, batch,
                                     steps.adversarial_step.args[1])
  # FLOPs are counted on the einsum formulation: XLA's cost analysis sees a chunked loop body once and
  # a cuDNN kernel not at all, so the fused programs would under-report the work they do.
  if args.flops_per_image:
    flops = args.flops_per_image * args.batch
  else:
    flops = _reference_flops(config, parser_variables, rep, shard, state, batch)

  def two_forward(state):
    state, _ = steps.discriminator_step(state, batch)
    return steps.generator_step(state, batch, True)

  def median_seconds(step, state):
    state, _ = step(state)  # warm-up (compiles through the cache)
    jax.block_until_ready(state)
    times = []
    for _ in range(args.iters):
      start = time.perf_counter()
      state, metrics = step(state)
      jax.block_until_ready((state, metrics))
      times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], state

  # The yardstick is measured before and after the timed steps, and the better kept.
  matmul = common.matmul_flops_per_s()
  seconds, state = median_seconds(lambda s: steps.adversarial_step(s, batch), state)
  two_forward_seconds, state = median_seconds(two_forward, state)
  matmul = max(matmul, common.matmul_flops_per_s())
  peak = step_stats["peak_bytes"]
  print(json.dumps({
      "benchmark": "train_step_stage2", "config": args.config, "batch": args.batch,
      "dtype": config.model.dtype, "nonlocal_impl": config.model.nonlocal_impl,
      "semantic": config.loss.semantic, "seconds_per_step": seconds, "images_per_s": args.batch / seconds,
      "two_forward_seconds_per_step": two_forward_seconds,
      "two_forward_images_per_s": args.batch / two_forward_seconds,
      "compile_s": step_stats["compile_s"], "flops_per_image": flops / args.batch,
      "achieved_flops_per_s": flops / seconds, "matmul_flops_per_s": matmul,
      "utilisation": flops / seconds / matmul, "peak_bytes_compiled": peak,
      "peak_bytes_device": common.device_peak_bytes(), "machine": common.machine()}))


if __name__ == "__main__":
  main()
