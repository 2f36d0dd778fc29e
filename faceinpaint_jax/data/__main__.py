"""Inspect the input: python -m faceinpaint_jax.data --config C [--out grid.png] [--json]
[--fingerprint-steps 0,1,500]."""

from __future__ import annotations

import hashlib
import json
import logging
import sys

from absl import flags

from faceinpaint_jax import cli
from faceinpaint_jax.assets import AssetError
from faceinpaint_jax.data import InputPipeline, SourceError
from faceinpaint_jax.models.local_window import crop_local_window_np
from faceinpaint_jax.visualize import image_grid, save_png

_CONFIG = cli.define_config_flag()
flags.DEFINE_string("out", None, "write a preview grid of the first batch to this PNG")
flags.DEFINE_bool("json", False, "print one JSON object")
flags.DEFINE_list("fingerprint_steps", [], "steps whose batches to hash (sha256 of images and masks)")
flags.DEFINE_string("split", "train", "split to preview and fingerprint")
FLAGS = flags.FLAGS


def fingerprint(batch) -> str:
  digest = hashlib.sha256()
  for key in ("image", "hole_mask"):
    digest.update(batch[key].tobytes())
  return digest.hexdigest()


def main(argv) -> int:
  cli.parse_flags(argv, _CONFIG)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
  config = _CONFIG.value
  try:
    pipeline = InputPipeline(config, split=FLAGS.split, training=FLAGS.split == "train",
                             process_index=0, process_count=1)
  except (SourceError, AssetError) as e:
    cli.fail(str(e))
  source = pipeline.source
  try:
    steps = [int(s) for s in FLAGS.fingerprint_steps]
  except ValueError:
    cli.fail(f"--fingerprint-steps must be integers, got {FLAGS.fingerprint_steps}")
  report = {
      "source": source.description,
      "splits": {name: len(split) for name, split in source.splits.items()},
      "skipped": len(source.skipped),
      "skipped_files": [f"{name}: {reason}" for name, reason in source.skipped],
      "image_size": config.data.image_size,
      "batch_size": config.train.batch_size,
      "fingerprints": {str(s): fingerprint(pipeline.batch(s)) for s in steps},
  }
  if FLAGS.out:
    batch = pipeline.batch(0)
    windows = crop_local_window_np(batch["damaged"], batch["window_offset"], pipeline.window)
    rows = [[batch["image"][i], batch["damaged"][i], batch["hole_mask"][i], windows[i]]
            for i in range(min(8, len(batch["image"])))]
    save_png(image_grid(rows), FLAGS.out)
    report["preview"] = FLAGS.out
  report["unreadable_at_load"] = len(pipeline.unreadable)
  pipeline.close()
  if FLAGS.json:
    print(json.dumps(report))
  else:
    print(f"source: {report['source']}")
    for name, n in report["splits"].items():
      print(f"  {name:<11} {n:>8} images")
    print(f"  skipped     {report['skipped']:>8} unreadable files")
    for s, h in report["fingerprints"].items():
      print(f"  step {s:>6}  {h}")
    if FLAGS.out:
      print(f"preview: {FLAGS.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
