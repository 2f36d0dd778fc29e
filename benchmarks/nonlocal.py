"""Non-local attention, forward + backward at 128×128×32, batch 4: time and peak memory per implementation.

  python benchmarks/nonlocal.py [--size 128] [--channels 32] [--batch 4] [--impls einsum,chunked]

Prints one JSON line. Peak memory is XLA's buffer assignment for the compiled program (arguments, outputs
and temporaries), the same measure on every backend.
"""

import argparse
import json

import common  # noqa: F401  (puts the repository on sys.path)
import jax
import jax.numpy as jnp

from faceinpaint_jax.models.non_local import NonLocalBlock


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", type=int, default=128)
  ap.add_argument("--channels", type=int, default=32)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--impls", default="einsum,chunked")
  ap.add_argument("--chunk", type=int, default=128)
  ap.add_argument("--iters", type=int, default=3)
  ap.add_argument("--dtype", default="float32", help="compute dtype (cudnn needs bfloat16)")
  args = ap.parse_args()
  x = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, args.channels))
  results = {}
  for impl in args.impls.split(","):
    block = NonLocalBlock(impl=impl, chunk_size=args.chunk, dtype=jnp.dtype(args.dtype))
    params = block.init(jax.random.key(1), x)["params"]
    # Non-zero output conv, so the backward pass reaches θ, φ and g as it does after training starts.
    params = jax.tree_util.tree_map(lambda p: p + 0.01, params)
    loss = lambda p, x: jnp.sum(jnp.sin(block.apply({"params": p}, x)))
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    stats = common.compiled_stats(step, params, x)
    seconds = common.time_call(stats["compiled"], params, x, iters=args.iters)
    results[impl] = {"seconds": seconds, "peak_bytes": stats["peak_bytes"], "compile_s": stats["compile_s"]}
  out = {"benchmark": "nonlocal_fwd_bwd", "shape": [args.batch, args.size, args.size, args.channels],
         "dtype": args.dtype,
         "chunk": args.chunk, "results": results, "machine": common.machine()}
  if "einsum" in results and "chunked" in results:
    out["chunked_vs_einsum"] = {
        "time_ratio": results["chunked"]["seconds"] / results["einsum"]["seconds"],
        "memory_ratio": results["chunked"]["peak_bytes"] / results["einsum"]["peak_bytes"]}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
