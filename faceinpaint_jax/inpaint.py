"""Inpaint real photos with a trained model:

  python -m faceinpaint_jax.inpaint --workdir DIR --input photo.jpg --output out.png [--mask mask.png]
  python -m faceinpaint_jax.inpaint --workdir DIR --input photos/ --output done/ [--mask masks/]

Each face is framed as the training faces were (faceinpaint_jax.framing): MTCNN finds it and its five
landmarks, a similarity transform maps them onto where CelebA's faces have theirs (rotating a tilted head
upright), the network completes that square crop at the model's size, and only the hole's pixels come
back, through the inverse transform at the photo's own resolution — every pixel outside the hole is
unchanged and the output has the input's size. Landmarks under the hole are left out of the fit (the box
places the crop when fewer than two remain); --face-box X1,Y1,X2,Y2 gives the face yourself; with several
faces each one whose crop meets the hole is completed. No face found: one warning, then a square crop
centred on the hole (--no-detect asks for that crop directly).

With --mask (white = hole, the photo's size; a folder of same-named PNGs for a folder) the hole is given.
Without it the model finds the damage itself (§3.1, mask-free): A_N → threshold, closing, dilation,
small components dropped (faceinpaint_jax.blind). In a grey or toned (sepia) photo the fill takes the
photo's own tone and grain (faceinpaint_jax.tone). --blend poisson smooths the seam (§3.5);
--debug-crops writes the photo with the chosen crops drawn; --save-attention writes A_N.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import numpy as np
from PIL import Image

from faceinpaint_jax import assets
from faceinpaint_jax.cli import UserError

MAX_HOLE_FRACTION = 0.9
# Training holes cover at most a quarter of the crop (32² of 64²); past half of the face there is no face
# left to complete from, and the network's fill would be invented wholesale.
MAX_CROP_HOLE_FRACTION = 0.5
# A landmark this close to the hole (in units of the face box's side) is taken as hidden by it.
LANDMARK_MARGIN = 0.04


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


def parse_face_box(text: str) -> tuple[float, float, float, float]:
  try:
    x1, y1, x2, y2 = (float(v) for v in text.split(","))
  except ValueError:
    raise UserError(f"--face-box must be X1,Y1,X2,Y2 in pixels, got {text!r}") from None
  if not (x2 > x1 and y2 > y1):
    raise UserError(f"--face-box {text!r}: x2 must exceed x1 and y2 exceed y1")
  return x1, y1, x2, y2


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


@dataclasses.dataclass
class Inpainted:
  image: np.ndarray  # (H, W, 3) uint8, the photo's size
  hole: np.ndarray  # (H, W) bool: the pixels that were completed
  attention: np.ndarray | None  # (H, W) A_N on the photo's grid (mask-free mode; None otherwise)
  frames: list  # framing.Frame, in the order they were completed
  faces: int  # faces the detector found
  notes: list[str]  # warnings for the user
  crops: list  # (size, size, 3) uint8 per frame: the damaged crop as the network saw it


class Inpainter:
  def __init__(self, workdir: str, step: int | None = None, detect: bool = True, blind_settings=None,
               detector_weights: str = ""):
    import jax

    from faceinpaint_jax.blind import BlindMaskSettings
    from faceinpaint_jax.checkpoint import CheckpointCorrupt, load_generator
    from faceinpaint_jax.models import build_generator
    try:
      self.config, self.variables, self.step = load_generator(workdir, step)
    except (FileNotFoundError, CheckpointCorrupt) as e:
      raise UserError(str(e)) from None
    self.size = int(self.config.data.image_size)
    self.blind_settings = blind_settings or BlindMaskSettings()
    generator = build_generator(self.config)
    self.attentive = bool(self.config.model.get("attentive", True))
    self._predict = jax.jit(lambda v, x, m: generator.apply(v, x, m, train=False))
    self.detector = None
    if detect:
      from faceinpaint_jax.assets import AssetError
      from faceinpaint_jax.detector import MTCNN, load_mtcnn_variables
      try:
        self.detector = MTCNN(load_mtcnn_variables(detector_weights, self.config.data.cache_dir))
      except AssetError as e:
        raise UserError(str(e)) from None

  # -- framing ------------------------------------------------------------------------------------
  def face_frames(self, photo: np.ndarray, hole: np.ndarray | None, face_box=None) -> tuple[list, int]:
    """Crops for the faces in `photo` (largest first), and how many faces the detector found."""
    from faceinpaint_jax import framing
    if face_box is not None:
      return [framing.frame_from_box(face_box, self.size, "face box")], 0
    if self.detector is None:
      return [], 0
    faces = sorted(self.detector(photo), key=lambda f: -f.size)
    frames = []
    for face in faces:
      usable = None
      if hole is not None:
        margin = int(np.ceil(LANDMARK_MARGIN * face.size))
        usable = np.array([not _near(hole, x, y, margin) for x, y in face.landmarks])
      if usable is None or usable.sum() >= framing.MIN_LANDMARKS:
        frames.append(framing.frame_from_landmarks(face.landmarks, self.size, usable))
      else:
        frames.append(framing.frame_from_box(face.box, self.size))
    return frames, len(faces)

  # -- one crop -----------------------------------------------------------------------------------
  def _complete_crop(self, photo, frame, hole, monochrome: bool = False):
    """Network on one crop → completion on the photo's grid, the photo pixels the crop covers, A_N on the
    photo's grid (None without the attentive module), when no hole is given the blind mask, and the
    network's input as uint8."""
    from faceinpaint_jax import framing
    from faceinpaint_jax.data.masks import damage_given_hole
    from faceinpaint_jax.data.preprocess import to_model_range, to_uint8
    from faceinpaint_jax.tone import apply_tone
    crop = framing.warp_to_crop(photo, frame)
    crop_hole = np.zeros((self.size, self.size), bool) if hole is None else framing.mask_to_crop(hole, frame)
    if monochrome:
      crop = apply_tone(crop, "grey")
    image = to_model_range(crop)
    if hole is not None:
      image = damage_given_hole(image, crop_hole[..., None].astype(np.float32), self.config.data.hole_fill)
    if hole is not None and crop_hole.mean() > MAX_CROP_HOLE_FRACTION:
      raise UserError(f"the mask covers {crop_hole.mean():.0%} of the crop it falls in ({frame.describe()}): "
                      f"the model completes holes of up to {MAX_CROP_HOLE_FRACTION:.0%} of a face crop")
    outputs = self._predict(self.variables, image[None], crop_hole[None, ..., None].astype(np.float32))
    completion = to_uint8(np.asarray(outputs["completion"][0]))
    seen = to_uint8(image)
    back, inside = framing.crop_to_photo(completion, frame, photo.shape[:2])
    if not self.attentive:
      return back, inside, None, None, seen
    from faceinpaint_jax.blind import blind_mask
    crop_attention = np.asarray(outputs["attention_maps"][-1, 0, ..., 0], np.float32)
    attention = np.clip(framing.crop_to_photo(crop_attention, frame, photo.shape[:2])[0], 0, 1) * inside
    found = None
    if hole is None:
      from faceinpaint_jax.blind import refine_on_photo
      crop_blind = blind_mask(crop_attention, self.blind_settings, (image + 1) / 2).astype(np.float32)
      soft = np.clip(framing.crop_to_photo(crop_blind, frame, photo.shape[:2])[0], 0, 1) * inside
      radius = max(1, int(round(2.0 / frame.scale))) if self.blind_settings.guided_radius > 0 else 0
      found = (refine_on_photo(soft, photo, radius) if radius else soft > 0.5) & inside
      from faceinpaint_jax.blind import FLAT_GROWTH, grow_into_fill
      found = grow_into_fill(found, photo, max(1, int(round(FLAT_GROWTH / frame.scale))),
                             self.blind_settings) & inside
    return back, inside, attention, found, seen

  # -- a photo ------------------------------------------------------------------------------------
  def __call__(self, photo: np.ndarray, mask: np.ndarray | None = None, blend: str = "none",
               face_box=None) -> Inpainted:
    """(H, W, 3) uint8 [+ (H, W) bool hole] → Inpainted."""
    from faceinpaint_jax import framing
    notes = []
    if mask is None and not self.attentive:
      raise UserError("this model has no attentive module (model.attentive=False): give the hole with --mask")
    if mask is not None:
      _check_hole(mask, "the mask")
    from faceinpaint_jax.tone import is_monochrome
    # A grey or toned print is shown to the network as grey; its fill is toned back below.
    monochrome = is_monochrome(photo, ~mask if mask is not None else np.ones(photo.shape[:2], bool))
    frames, faces = self.face_frames(photo, mask, face_box)
    result = photo.copy()
    if mask is None:  # mask-free: each face's crop finds its own damage
      if not frames:
        if self.detector is not None:
          raise UserError("no face found and no --mask: give the hole with --mask, or the face with --face-box")
        frames = [_center_square(photo.shape[:2], self.size)]
      hole = np.zeros(photo.shape[:2], bool)
      attention_photo = np.zeros(photo.shape[:2], np.float32)
      crops = []
      for frame in frames:
        back, inside, attention, found, seen = self._complete_crop(photo, frame, None, monochrome)
        crops.append(seen)
        new = found & ~hole
        result[new] = back[new]
        hole |= found
        attention_photo = np.maximum(attention_photo, attention)
      s = self.blind_settings
      _check_hole(hole, f"the detected damage (A_N > {s.threshold}, closing {s.closing}, dilation {s.dilation})")
      used = frames
    else:
      hole = mask
      attention_photo = None
      remaining = mask.copy()
      used, crops = [], []

      def complete_in(frame):
        """Fill the hole pixels this crop holds that no earlier crop filled."""
        back, inside, _, _, seen = self._complete_crop(photo, frame, mask, monochrome)
        take = remaining & inside
        result[take] = back[take]
        remaining[take] = False
        used.append(frame)
        crops.append(seen)

      for frame in frames:
        _, inside = framing.crop_to_photo(np.zeros((self.size, self.size), np.uint8), frame, photo.shape[:2])
        if (remaining & inside).any():  # else this face's crop does not meet the hole
          complete_in(frame)
      if self.detector is not None and not used and face_box is None:
        notes.append("no face found" if not faces else f"no face's crop meets the hole ({faces} found)")
      for _ in range(4):  # hole pixels outside every face crop: a square crop around what is left
        if not remaining.any():
          break
        complete_in(framing.frame_around(remaining, self.size, photo.shape[:2]))
      if used and used[-1].how == "hole" and len(used) > 1:
        notes.append("part of the hole lies outside the face crops: completed from a crop around it")
    if blend == "poisson":
      result = poisson_blend(photo, result, hole)
    from faceinpaint_jax.tone import follow_tone
    result = follow_tone(result, hole)  # grey and toned prints keep their tone and grain in the fill
    return Inpainted(result.astype(np.uint8), hole, attention_photo, used, faces, notes, crops)


def _near(hole: np.ndarray, x: float, y: float, margin: int) -> bool:
  h, w = hole.shape
  xi, yi = int(round(x)), int(round(y))
  if not (0 <= xi < w and 0 <= yi < h):
    return True  # a landmark outside the photo is no help either
  return bool(hole[max(0, yi - margin):yi + margin + 1, max(0, xi - margin):xi + margin + 1].any())


def _center_square(shape, size):
  from faceinpaint_jax import framing
  h, w = shape
  return framing.centred_frame((w / 2, h / 2), min(h, w), size, "centre square")


def write_png(array: np.ndarray, path: pathlib.Path):
  """Written under a temporary name and renamed: a reader never sees half a file."""
  assets.write_atomically(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


@dataclasses.dataclass
class Job:
  photo: pathlib.Path
  mask: pathlib.Path | None
  output: pathlib.Path
  attention: pathlib.Path | None
  debug: pathlib.Path | None


def _jobs(args) -> tuple[list[Job], bool]:
  from faceinpaint_jax.data.sources import IMAGE_EXTENSIONS
  source = pathlib.Path(args.input)
  if not source.exists():
    raise UserError(f"input not found: {source}")
  if source.is_dir():
    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
      raise UserError(f"no images in {source}")
    if args.mask and not pathlib.Path(args.mask).is_dir():
      raise UserError(f"--mask must be a folder when --input is one: {args.mask}")
    folder = lambda arg, p: (pathlib.Path(arg) / (p.stem + ".png")) if arg else None
    return [Job(p, folder(args.mask, p), pathlib.Path(args.output) / (p.stem + ".png"),
                folder(args.save_attention, p), folder(args.debug_crops, p)) for p in photos], True
  for flag, value in (("--output", args.output), ("--save-attention", args.save_attention),
                      ("--debug-crops", args.debug_crops)):
    if value and pathlib.Path(value).suffix.lower() != ".png":
      raise UserError(f"{flag} must be a .png file, got {value}")
  optional = lambda v: pathlib.Path(v) if v else None
  return [Job(source, optional(args.mask), pathlib.Path(args.output), optional(args.save_attention),
              optional(args.debug_crops))], False


def _process(inpainter: Inpainter, job: Job, args, face_box) -> Inpainted:
  from faceinpaint_jax import framing
  photo = _read_image(job.photo)
  mask = None
  if job.mask is not None:
    if not job.mask.exists():
      raise UserError(f"mask not found: {job.mask}")
    mask = _read_mask(job.mask, photo.shape[:2])
  done = inpainter(photo, mask, args.blend, face_box)
  # Everything is computed before anything is written: an error leaves no output behind.
  write_png(done.image, job.output)
  if job.attention is not None and done.attention is not None:
    write_png(np.clip(np.round(done.attention * 255), 0, 255).astype(np.uint8), job.attention)
  if job.debug is not None:
    write_png(framing.draw_frames(photo, done.frames, done.hole), job.debug)
  return done


def run(args) -> int:
  from faceinpaint_jax.blind import BlindMaskSettings
  face_box = parse_face_box(args.face_box) if args.face_box else None
  jobs, is_folder = _jobs(args)
  if face_box is not None and is_folder:
    raise UserError("--face-box applies to one photo, not a folder")
  if not is_folder:  # check the inputs before the model loads
    photo = _read_image(jobs[0].photo)
    if jobs[0].mask is not None:
      _check_hole(_read_mask(jobs[0].mask, photo.shape[:2]), f"the mask {jobs[0].mask}")
  settings = BlindMaskSettings(guided_radius=args.guided_radius, threshold=args.threshold, closing=args.closing,
                               dilation=args.dilation, min_area=args.min_area)
  inpainter = Inpainter(args.workdir, args.step, detect=not args.no_detect, blind_settings=settings,
                        detector_weights=args.detector_weights)
  if not is_folder:
    done = _process(inpainter, jobs[0], args, face_box)
    for note in done.notes:
      print(f"warning: {note}", file=sys.stderr)
    crops = "; ".join(f.describe() for f in done.frames)
    print(f"inpainted {jobs[0].photo.name} → {jobs[0].output} ({done.faces} face(s) found; crop: {crops})")
    return 0
  from tqdm import tqdm
  done_count, skipped, faces = 0, [], 0
  for job in tqdm(jobs, unit="photo", desc="inpainting", file=sys.stderr, disable=not sys.stderr.isatty()):
    try:
      done = _process(inpainter, job, args, None)
    except UserError as e:
      skipped.append(job.photo.name)
      tqdm.write(f"skipped {job.photo.name}: {e}", file=sys.stderr)
      continue
    done_count += 1
    faces += done.faces
    for note in done.notes:
      tqdm.write(f"warning: {job.photo.name}: {note}", file=sys.stderr)
  print(f"inpainted {done_count} of {len(jobs)} photo(s) → {args.output}; skipped {len(skipped)}; "
        f"faces found {faces}")
  return 0 if done_count else 2


def main(argv=None) -> int:
  from faceinpaint_jax.blind import BlindMaskSettings
  defaults = BlindMaskSettings()
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.inpaint", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="a training run's directory (config.json + checkpoints)")
  ap.add_argument("--input", required=True, help="a photo, or a folder of photos")
  ap.add_argument("--output", required=True, help="output PNG, or a folder for folder input")
  ap.add_argument("--mask", default=None, help="mask PNG (white = hole) or a folder of them; default: detect")
  ap.add_argument("--blend", choices=("none", "poisson"), default="none")
  ap.add_argument("--face-box", default=None, help="X1,Y1,X2,Y2: the face, instead of detecting it")
  ap.add_argument("--no-detect", action="store_true", help="no face detection: a square crop around the hole")
  ap.add_argument("--detector-weights", default="",
                  help="a folder with MTCNN's pnet.pt, rnet.pt, onet.pt (default: the pinned download)")
  ap.add_argument("--debug-crops", default=None, help="write the photo with the chosen crops drawn (PNG/folder)")
  ap.add_argument("--guided-radius", type=int, default=defaults.guided_radius,
                  help="guided-filter radius refining A_N on the photo's edges (mask-free mode; 0 = off)")
  ap.add_argument("--threshold", type=float, default=defaults.threshold, help="A_N threshold (mask-free mode)")
  ap.add_argument("--closing", type=int, default=defaults.closing, help="closing radius, px at the model's size")
  ap.add_argument("--dilation", type=int, default=defaults.dilation, help="growth of the blind mask, px")
  ap.add_argument("--min-area", type=float, default=defaults.min_area,
                  help="blind-mask components below this fraction of the crop are dropped")
  ap.add_argument("--save-attention", default=None, help="write A_N as a grey PNG (mask-free mode; a folder for a folder)")
  ap.add_argument("--step", type=int, default=None, help="a kept checkpoint step (default: the latest)")
  args = ap.parse_args(argv)
  try:
    return run(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
