"""Face parsing with the pretrained BiSeNet:

  python -m faceinpaint_jax.parse --input face.jpg --output parse.png [--size 512] [--save-labels L.npy]

Writes the face beside its colour-coded label map and a legend (like the paper's Fig. 5); --save-labels
writes the uint8 class ids (size × size). A folder as --input parses every image in it into the --output
folder (labels as NAME.npy beside each PNG when --save-labels is given a folder).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw

from faceinpaint_jax.assets import AssetError, write_atomically
from faceinpaint_jax.data.preprocess import BadImageError, decode_image
from faceinpaint_jax.data.sources import IMAGE_EXTENSIONS

# One colour per CelebAMask-HQ class, in CLASS_NAMES order.
PALETTE = np.array([
    [0, 0, 0], [204, 120, 100], [0, 180, 0], [0, 120, 0], [60, 60, 230], [0, 0, 150], [230, 230, 0],
    [255, 150, 0], [180, 90, 0], [255, 0, 255], [255, 60, 60], [150, 0, 150], [255, 140, 200],
    [200, 40, 120], [120, 200, 255], [0, 200, 200], [90, 90, 90], [130, 60, 20], [255, 255, 160]],
    np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
  return PALETTE[labels]


def figure(image_uint8: np.ndarray, labels: np.ndarray) -> Image.Image:
  """Face | label map, with a legend of the classes below."""
  from faceinpaint_jax.parser import CLASS_NAMES

  size = labels.shape[0]
  face = Image.fromarray(image_uint8).resize((size, size), Image.Resampling.BILINEAR)
  row_height, columns = 18, 4
  rows = -(-len(CLASS_NAMES) // columns)
  canvas = Image.new("RGB", (2 * size, size + rows * row_height + 8), "white")
  canvas.paste(face, (0, 0))
  canvas.paste(Image.fromarray(colorize(labels)), (size, 0))
  draw = ImageDraw.Draw(canvas)
  cell = 2 * size // columns
  for i, name in enumerate(CLASS_NAMES):
    x, y = (i % columns) * cell + 4, size + 4 + (i // columns) * row_height
    draw.rectangle([x, y + 2, x + 12, y + 14], fill=tuple(int(c) for c in PALETTE[i]), outline="black")
    draw.text((x + 16, y + 2), name, fill="black")
  return canvas


class Parser:
  def __init__(self, weights: str, size: int):
    import jax

    from faceinpaint_jax.parser import BiSeNet, load_parser_variables
    self.size = size
    self.variables = load_parser_variables(weights)
    self._apply = jax.jit(lambda v, x: BiSeNet().apply(v, x).argmax(-1).astype("uint8"))

  def __call__(self, rgb_uint8: np.ndarray) -> np.ndarray:
    from faceinpaint_jax.parser import parser_input
    return np.asarray(self._apply(self.variables, parser_input(rgb_uint8, self.size)[None]))[0]


def _save_npy(path, array: np.ndarray):
  with open(path, "wb") as f:  # through a file object: np.save appends ".npy" to a name that lacks it
    np.save(f, array)


def _fail(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 2


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.parse", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--input", required=True, help="an image, or a folder of images")
  ap.add_argument("--output", required=True, help="PNG to write, or a folder when --input is a folder")
  ap.add_argument("--size", type=int, default=512, help="parsing resolution (the checkpoint's is 512)")
  ap.add_argument("--save-labels", default=None, help=".npy of uint8 class ids (a folder for folder input)")
  ap.add_argument("--weights", default="", help="79999_iter.pth or converted .npz; default: pinned download")
  args = ap.parse_args(argv)

  source = pathlib.Path(args.input)
  if not source.exists():
    return _fail(f"input not found: {source}")
  if args.size < 32 or args.size % 32:
    return _fail(f"--size must be a positive multiple of 32, got {args.size}")
  if source.is_dir():
    inputs = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not inputs:
      return _fail(f"no images in {source}")
    out_dir = pathlib.Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    label_dir = pathlib.Path(args.save_labels) if args.save_labels else None
    if label_dir:
      label_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(p, out_dir / (p.stem + ".png"), label_dir / (p.stem + ".npy") if label_dir else None)
            for p in inputs]
  else:
    if pathlib.Path(args.output).suffix.lower() != ".png":
      return _fail(f"--output must be a .png file for a single input, got {args.output}")
    jobs = [(source, pathlib.Path(args.output), pathlib.Path(args.save_labels) if args.save_labels else None)]
  try:
    parser = Parser(args.weights, args.size)
  except AssetError as e:
    return _fail(str(e))
  failures = 0
  for image_path, out_path, labels_path in jobs:
    try:
      rgb = decode_image(str(image_path))
    except BadImageError as e:
      if len(jobs) == 1:
        return _fail(f"{image_path} is not a readable image ({e})")
      print(f"warning: skipping {image_path}: {e}", file=sys.stderr)
      failures += 1
      continue
    labels = parser(rgb)
    write_atomically(out_path, lambda p: figure(rgb, labels).save(p, format="PNG"))
    if labels_path is not None:
      write_atomically(labels_path, lambda p: _save_npy(p, labels))
  print(f"parsed {len(jobs) - failures} image(s) → {args.output}")
  return 0 if failures < len(jobs) else 2


if __name__ == "__main__":
  sys.exit(main())
