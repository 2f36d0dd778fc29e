"""Inpaint real photos with a trained model:

  python -m faceinpaint_jax.inpaint --workdir DIR --input photo.png --output out.png \
      [--mask mask.png] [--blend poisson] [--threshold 0.5] [--save-attention att.png]

Any size of photo: the network sees it resized to the model's size; only the hole is pasted back, at the
photo's own resolution, so every pixel outside the hole is unchanged. With --mask (white = hole, same size
as the photo) the hole is given; without it, the attentive module finds the damaged region itself (the
paper's mask-free mode: A_N > --threshold). --blend poisson smooths the seam (§3.5). A folder as --input
inpaints every image in it into the --output folder (masks, if any, matched by file name in --mask).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

from faceinpaint_jax.cli import UserError
from PIL import Image

MAX_HOLE_FRACTION = 0.9


def _read_image(path) -> np.ndarray:
  from faceinpaint_jax.data.preprocess import BadImageError, decode_image
  try:
    return decode_image(str(path))
  except BadImageError as e:
    raise UserError(f"{path} is not a readable image ({e})") from None
  except FileNotFoundError:
    raise UserError(f"input not found: {path}") from None


def _read_mask(path, shape) -> np.ndarray:
  try:
    with Image.open(path) as m:
      mask = np.asarray(m.convert("L")) > 127
  except FileNotFoundError:
    raise UserError(f"mask not found: {path}") from None
  except OSError as e:
    raise UserError(f"mask {path} is not a readable image ({e})") from None
  if mask.shape != shape:
    raise UserError(f"mask {path} is {mask.shape[1]}×{mask.shape[0]} but the photo is {shape[1]}×{shape[0]}")
  return mask


def _check_hole(mask: np.ndarray, what: str):
  if not mask.any():
    raise UserError(f"{what} is empty: nothing to inpaint")
  if mask.mean() > MAX_HOLE_FRACTION:
    raise UserError(f"{what} covers {mask.mean():.0%} of the image: too little is left to complete from")


def poisson_blend(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """OpenCV seamless cloning of the filled hole into the photo (pixels outside the hole are restored)."""
  import cv2
  h, w = mask.shape
  pad = 2  # seamlessClone needs the region away from the border
  src = cv2.copyMakeBorder(cv2.cvtColor(filled, cv2.COLOR_RGB2BGR), pad, pad, pad, pad, cv2.BORDER_REFLECT)
  dst = cv2.copyMakeBorder(cv2.cvtColor(original, cv2.COLOR_RGB2BGR), pad, pad, pad, pad, cv2.BORDER_REFLECT)
  region = np.pad(cv2.dilate(mask.astype(np.uint8) * 255, np.ones((3, 3), np.uint8)), pad)
  ys, xs = np.nonzero(region)
  center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
  blended = cv2.seamlessClone(src, dst, region, center, cv2.NORMAL_CLONE)
  blended = cv2.cvtColor(blended[pad:pad + h, pad:pad + w], cv2.COLOR_BGR2RGB)
  return np.where(mask[..., None], blended, original)


class Inpainter:
  def __init__(self, workdir: str, threshold: float = 0.5, step: int | None = None):
    import jax

    from faceinpaint_jax.checkpoint import CheckpointCorrupt, load_generator
    from faceinpaint_jax.models import build_generator
    try:
      self.config, self.variables, self.step = load_generator(workdir, step)
    except (FileNotFoundError, CheckpointCorrupt) as e:
      raise UserError(str(e)) from None
    self.size = int(self.config.data.image_size)
    self.threshold = threshold
    generator = build_generator(self.config)
    self.attentive = bool(self.config.model.get("attentive", True))
    self._predict = jax.jit(lambda v, x, m: generator.apply(v, x, m, train=False))

  def __call__(self, photo: np.ndarray, mask: np.ndarray | None = None, blend: str = "none"):
    """(H, W, 3) uint8 [+ (H, W) bool hole] → (completed photo, attention map A_N at photo size, hole)."""
    from faceinpaint_jax.data.masks import damage_given_hole
    from faceinpaint_jax.data.preprocess import to_model_range, to_uint8
    h, w = photo.shape[:2]
    small = np.asarray(Image.fromarray(photo).resize((self.size, self.size), Image.Resampling.BICUBIC))
    image = to_model_range(small)
    small_mask = np.zeros((self.size, self.size), bool)
    if mask is None and not self.attentive:
      raise UserError("this model has no attentive module (model.attentive=False): give the hole with --mask")
    if mask is not None:
      _check_hole(mask, "the mask")
      small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
          (self.size, self.size), Image.Resampling.BILINEAR)) > 0
      image = damage_given_hole(image, small_mask[..., None].astype(np.float32), self.config.data.hole_fill)
    outputs = self._predict(self.variables, image[None], small_mask[None, ..., None].astype(np.float32))
    attention = (np.asarray(outputs["attention_maps"][-1, 0, ..., 0]) if self.attentive
                 else small_mask.astype(np.float32))
    attention_full = np.asarray(Image.fromarray(attention.astype(np.float32), mode="F").resize(
        (w, h), Image.Resampling.BILINEAR))
    if mask is None:
      mask = attention_full > self.threshold
      _check_hole(mask, f"the detected damage (A_N > {self.threshold})")
    completion = to_uint8(np.asarray(outputs["completion"][0]))
    completion_full = np.asarray(Image.fromarray(completion).resize((w, h), Image.Resampling.BICUBIC))
    result = np.where(mask[..., None], completion_full, photo)
    if blend == "poisson":
      result = poisson_blend(photo, result, mask)
    return result.astype(np.uint8), attention_full, mask


def _atomic_png(array: np.ndarray, path: pathlib.Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.partial.png")
  Image.fromarray(array).save(tmp)
  os.replace(tmp, path)


def run(args) -> int:
  from faceinpaint_jax.data.sources import IMAGE_EXTENSIONS
  source = pathlib.Path(args.input)
  if not source.exists():
    raise UserError(f"input not found: {source}")
  if source.is_dir():
    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
      raise UserError(f"no images in {source}")
    mask_dir = pathlib.Path(args.mask) if args.mask else None
    jobs = [(p, (mask_dir / (p.stem + ".png")) if mask_dir else None, pathlib.Path(args.output) / (p.stem + ".png"),
             pathlib.Path(args.save_attention) / (p.stem + ".png") if args.save_attention else None)
            for p in photos]
  else:
    if pathlib.Path(args.output).suffix.lower() != ".png":
      raise UserError(f"--output must be a .png file, got {args.output}")
    jobs = [(source, pathlib.Path(args.mask) if args.mask else None, pathlib.Path(args.output),
             pathlib.Path(args.save_attention) if args.save_attention else None)]
  # Read and check every input before writing anything.
  loaded = []
  for photo_path, mask_path, out_path, att_path in jobs:
    photo = _read_image(photo_path)
    mask = _read_mask(mask_path, photo.shape[:2]) if mask_path else None
    if mask is not None:
      _check_hole(mask, f"the mask {mask_path}")
    loaded.append((photo, mask, out_path, att_path))
  inpainter = Inpainter(args.workdir, args.threshold, args.step)
  results = [(inpainter(photo, mask, args.blend), out_path, att_path)
             for photo, mask, out_path, att_path in loaded]
  for (result, attention, _), out_path, att_path in results:
    _atomic_png(result, out_path)
    if att_path is not None:
      _atomic_png(np.clip(np.round(attention * 255), 0, 255).astype(np.uint8), att_path)
  print(f"inpainted {len(results)} image(s) → {args.output}")
  return 0


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.inpaint", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="a training run's directory (config.json + checkpoints)")
  ap.add_argument("--input", required=True, help="a photo, or a folder of photos")
  ap.add_argument("--output", required=True, help="output PNG, or a folder for folder input")
  ap.add_argument("--mask", default=None, help="mask PNG (white = hole) or a folder of them; default: detect")
  ap.add_argument("--blend", choices=("none", "poisson"), default="none")
  ap.add_argument("--threshold", type=float, default=0.5, help="A_N threshold in mask-free mode")
  ap.add_argument("--save-attention", default=None, help="write A_N as a grey PNG (a folder for folder input)")
  ap.add_argument("--step", type=int, default=None, help="a kept checkpoint step (default: the latest)")
  args = ap.parse_args(argv)
  try:
    return run(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
