"""Try a trained model on real photos: the eight pinned portraits (assets.PORTRAITS: face_recognition's test
photos, scikit-image's astronaut, matplotlib's Grace Hopper — none from CelebA), each with a hole over the
eyes, the nose or the mouth placed from its detected landmarks, through `inpaint`'s own path.

  python -m faceinpaint_jax.photos --workdir runs/quickstart --out runs/photos [--mask-free]

Writes OUT/<photo>.png (completed, the photo's size), OUT/masks/, OUT/crops/ (the chosen crops drawn),
OUT/grid.png (per photo: the crop drawn on the photo, damaged and completed close-ups around the hole) and
OUT/report.json; checks and prints for each photo that the output has the input's size, that no pixel
outside the hole changed and which crop framed the face.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image

from faceinpaint_jax.cli import UserError

PARTS = ("eyes", "nose", "mouth")


def hole_over(part: str, landmarks: np.ndarray, shape) -> np.ndarray:
  """A rectangle over a face part, sized by the eye distance (what a scratch or a sticker might cover)."""
  span = float(np.linalg.norm(landmarks[1] - landmarks[0]))
  if part == "eyes":
    center, (w, h) = landmarks[:2].mean(axis=0), (2.0 * span, 0.6 * span)
  elif part == "nose":
    center, (w, h) = landmarks[2], (0.8 * span, 0.8 * span)
  else:
    center, (w, h) = landmarks[3:].mean(axis=0), (1.4 * span, 0.6 * span)
  mask = np.zeros(shape, bool)
  x0, y0 = int(round(center[0] - w / 2)), int(round(center[1] - h / 2))
  mask[max(y0, 0):max(y0 + int(h), 0), max(x0, 0):max(x0 + int(w), 0)] = True
  return mask


def _closeup(image: np.ndarray, hole: np.ndarray, side: int = 256) -> Image.Image:
  ys, xs = np.nonzero(hole)
  cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
  half = int(max(np.ptp(ys), np.ptp(xs)) * 1.2) + 8
  box = (max(cx - half, 0), max(cy - half, 0), min(cx + half, image.shape[1]), min(cy + half, image.shape[0]))
  return Image.fromarray(image).crop(box).resize((side, side), Image.Resampling.LANCZOS)


def run(workdir: str, out: str, mask_free: bool = False, cache_dir: str = "") -> dict:
  from faceinpaint_jax import assets, framing
  from faceinpaint_jax.data.preprocess import decode_image
  from faceinpaint_jax.inpaint import Inpainter

  out = pathlib.Path(out)
  for sub in ("masks", "crops"):
    (out / sub).mkdir(parents=True, exist_ok=True)
  photos = assets.portraits_dir(cache_dir)
  painter = Inpainter(workdir)
  rows, report = [], {"workdir": str(pathlib.Path(workdir).resolve()), "mask_free": mask_free, "photos": {}}
  for k, name in enumerate(sorted(assets.PORTRAITS)):
    photo = decode_image(str(photos / name))
    faces = sorted(painter.detector(photo), key=lambda f: -f.size)
    if not faces:
      report["photos"][name] = {"error": "no face found"}
      continue
    part = PARTS[k % len(PARTS)]
    hole = hole_over(part, faces[0].landmarks, photo.shape[:2])
    damaged = photo.copy()
    damaged[hole] = 255
    try:
      done = painter(damaged, None) if mask_free else painter(photo, hole)
    except UserError as e:  # e.g. mask-free and the damaged face is no longer detected
      report["photos"][name] = {"error": str(e)}
      print(f"{name}: {e}", flush=True)
      continue
    stem = pathlib.Path(name).stem
    Image.fromarray(done.image).save(out / f"{stem}.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")
    crops = framing.draw_frames(photo, done.frames, hole)
    Image.fromarray(crops).save(out / "crops" / f"{stem}.png")
    unchanged = bool(np.array_equal(done.image[~done.hole], (damaged if mask_free else photo)[~done.hole]))
    entry = {"size": list(photo.shape[:2]), "output_size": list(done.image.shape[:2]), "part": part,
             "faces_found": done.faces, "crops": [f.describe() for f in done.frames],
             "outside_hole_unchanged": unchanged, "notes": done.notes}
    if mask_free:
      inter, union = (done.hole & hole).sum(), (done.hole | hole).sum()
      entry.update(blind_iou=float(inter / max(union, 1)),
                   white_left=int(((done.image == 255).all(axis=-1) & hole).sum()))
    report["photos"][name] = entry
    print(f"{name}: {photo.shape[1]}×{photo.shape[0]}, hole over the {part}, {done.faces} face(s); crop "
          f"{entry['crops'][0]}; output {done.image.shape[1]}×{done.image.shape[0]}, outside the hole "
          f"{'unchanged' if unchanged else 'CHANGED'}" + (f", blind IoU {entry['blind_iou']:.3f}, white pixels "
                                                         f"left {entry['white_left']}" if mask_free else ""),
          flush=True)
    thumb = Image.fromarray(crops)
    thumb = thumb.resize((max(1, round(256 * thumb.width / thumb.height)), 256), Image.Resampling.LANCZOS)
    rows.append([thumb, _closeup(damaged, hole), _closeup(done.image, hole)])
  if rows:
    width = max(sum(t.width for t in row) for row in rows)
    grid = Image.new("RGB", (width, 256 * len(rows)), (255, 255, 255))
    for i, row in enumerate(rows):
      x = 0
      for tile in row:
        grid.paste(tile, (x, 256 * i))
        x += tile.width
    grid.save(out / "grid.png")
  (out / "report.json").write_text(json.dumps(report, indent=2))
  return report


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.photos", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--mask-free", action="store_true",
                  help="fill the holes white and let the model find them (no mask given)")
  args = ap.parse_args(argv)
  from faceinpaint_jax.assets import AssetError
  try:
    report = run(args.workdir, args.out, args.mask_free)
  except (UserError, AssetError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  bad = [n for n, e in report["photos"].items() if "error" in e or not e["outside_hole_unchanged"]]
  print(f"{len(report['photos']) - len(bad)} of {len(report['photos'])} photos completed as required → {args.out}")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
