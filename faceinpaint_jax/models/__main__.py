"""Model summary: python -m faceinpaint_jax.models --config configs/celeba128.py [--json]."""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from faceinpaint_jax.config import ConfigError, load_config_file
from faceinpaint_jax.models import build_discriminators, build_generator, local_window_size


def _count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def _flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


def summarize(config, batch: int = 1) -> dict:
  size = config.data.image_size
  window = local_window_size(config)
  generator, discriminators = build_generator(config), build_discriminators(config)
  images = jnp.zeros((batch, size, size, 3), jnp.float32)
  windows = jnp.zeros((batch, window, window, 3), jnp.float32)
  key = jax.random.key(0)
  masks = jnp.zeros((batch, size, size, 1), jnp.float32)
  g_vars = jax.eval_shape(lambda: generator.init(key, images, masks))
  d_vars = jax.eval_shape(lambda: discriminators.init(key, images, windows))
  g_fn = lambda v, x: generator.apply(v, x, masks)
  d_fn = lambda v, x, w: discriminators.apply(v, x, w)
  g_out = jax.eval_shape(g_fn, g_vars, images)
  d_out = jax.eval_shape(d_fn, d_vars, images, windows)
  return {
      "generator": {
          "params": _count(g_vars["params"]),
          "params_by_module": {k: _count(v) for k, v in g_vars["params"].items()},
          "flops_per_image": _flops(g_fn, g_vars, images) / batch,
          "outputs": {
              "attention_maps": (list(g_out["attention_maps"].shape) if "attention_maps" in g_out
                                 else None),
              "completed": list(g_out["completion"].shape),
              "multiscale": [list(o.shape) for o in g_out["multiscale"]],
          },
      },
      "discriminator": {
          "params": _count(d_vars["params"]),
          "params_by_module": {k: _count(v) for k, v in d_vars["params"].items()},
          "flops_per_image": _flops(d_fn, d_vars, images, windows) / batch,
          "outputs": {"global": list(d_out[0].shape), "local": list(d_out[1].shape)},
      },
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m faceinpaint_jax.models", description=__doc__)
  parser.add_argument("--config", required=True, help="config file with get_config()")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--batch", type=int, default=1)
  args = parser.parse_args(argv)
  try:
    config = load_config_file(args.config)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  summary = summarize(config, args.batch)
  if args.json:
    print(json.dumps(summary))
    return 0
  for net in ("generator", "discriminator"):
    s = summary[net]
    print(f"{net}: {s['params']:,} parameters, {s['flops_per_image'] / 1e9:.2f} GFLOPs per image (forward)")
    for name, count in s["params_by_module"].items():
      print(f"  {name:<24} {count:>12,}")
    for name, shape in s["outputs"].items():
      print(f"  output {name:<17} {shape}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
