"""An interactive page over `inpaint`: open a photo, brush over the damage (or let the model find it),
compare, download.

  pip install -e ".[demo]"
  python -m faceinpaint_jax.demo --workdir runs/quickstart [--port 7860] [--host 127.0.0.1]

The page is a thin layer over `faceinpaint_jax.inpaint.Inpainter`: the same face framing, blind masks,
tone handling and paste-back as `python -m faceinpaint_jax.inpaint`, so a result downloaded here equals
that command's output for the same photo and mask. The newest verified checkpoint of --workdir is loaded
once (EMA weights where they exist) and compiled before the page opens. The server binds to 127.0.0.1
unless --host says otherwise, sends no telemetry, makes no share link and fetches nothing at run time.
Bad input (an unreadable or too large file, no face, an empty brush, a mask over the whole face) is a
message on the page; the server keeps serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from faceinpaint_jax.cli import USER_ERROR_EXIT, UserError

# Uploads above either limit are refused with a message (the byte limit by the server before decoding,
# the pixel limit from the file's header before its pixels are decoded).
MAX_UPLOAD_MB = 25
MAX_PIXELS = 6000 * 6000
# Held-out sample faces (ids 900–999 are never trained on) offered as examples on the page.
EXAMPLE_FACES = ("000950.jpg", "000912.jpg", "000977.jpg")
# The mask-free example: a held-out face with a white hole over the eyes, as the paper damages faces.
MASK_FREE_EXAMPLE = ("000950.jpg", (60, 82, 118, 112))  # x1, y1, x2, y2 on the 178×218 photo
MODES = ("brushed mask", "mask-free (the model finds the damage)")
VIEW_BUTTONS = ["download", "fullscreen"]  # no "share": nothing leaves this machine
CROP_VIEW_SIZE = 256  # the network's crop is shown enlarged (nearest neighbour: its pixels stay visible)


@dataclasses.dataclass
class Completed:
  photo: np.ndarray  # (H, W, 3) uint8: what was uploaded
  mask_view: np.ndarray  # the photo with the hole tinted red and the crops outlined
  crop_view: np.ndarray  # the crops as the network saw them, side by side
  result: np.ndarray  # (H, W, 3) uint8, the photo's size
  hole: np.ndarray  # (H, W) bool
  message: str


def read_photo(path: str) -> np.ndarray:
  """A photo file → (H, W, 3) uint8, its size checked from the header before its pixels are decoded."""
  from faceinpaint_jax.data.preprocess import BadImageError, decode_image
  try:
    with Image.open(path) as image:
      width, height = image.size
  except (OSError, Image.DecompressionBombError, ValueError) as e:
    raise UserError(f"the upload is not a readable image ({type(e).__name__})") from None
  if width * height > MAX_PIXELS:
    raise UserError(f"the photo is {width}×{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
  try:
    return decode_image(path)
  except BadImageError as e:
    raise UserError(f"the upload is not a readable image ({e})") from None


def brushed_hole(layers, shape: tuple[int, int]) -> np.ndarray:
  """The union of the brush layers' painted pixels (alpha > 0) as an (H, W) bool mask."""
  hole = np.zeros(shape, bool)
  for layer in layers or ():
    with Image.open(layer) as image:
      alpha = np.asarray(image.convert("RGBA"))[..., 3]
    if alpha.shape != shape:
      raise UserError(f"the brush layer is {alpha.shape[1]}×{alpha.shape[0]} but the photo is "
                      f"{shape[1]}×{shape[0]}")
    hole |= alpha > 0
  return hole


def crop_strip(crops: list[np.ndarray]) -> np.ndarray:
  """The network's crops enlarged for the page, side by side."""
  views = [np.asarray(Image.fromarray(c).resize((CROP_VIEW_SIZE, CROP_VIEW_SIZE), Image.NEAREST)) for c in crops]
  gap = np.full((CROP_VIEW_SIZE, 8, 3), 255, np.uint8)
  parts = [views[0]]
  for view in views[1:]:
    parts += [gap, view]
  return np.concatenate(parts, axis=1)


class DemoModel:
  """One loaded model and what the page asks of it."""

  def __init__(self, workdir: str, step: int | None = None, detector_weights: str = ""):
    from faceinpaint_jax.inpaint import Inpainter
    self.inpainter = Inpainter(workdir, step, detector_weights=detector_weights)
    self.name = pathlib.Path(workdir).resolve().name
    self.attentive = self.inpainter.attentive

  def describe(self) -> str:
    size = self.inpainter.size
    mode = "brushed masks and mask-free" if self.attentive else "brushed masks only (no attentive module)"
    return (f"**Model** `{self.name}` · training step {self.inpainter.step} · network input {size}×{size} · "
            f"{mode}")

  def complete(self, photo: np.ndarray, hole: np.ndarray | None) -> Completed:
    """`hole` None = mask-free. Raises UserError for anything the user can fix."""
    from faceinpaint_jax import framing
    if hole is not None and not hole.any():
      raise UserError("the brush mask is empty: brush over the damage, or choose mask-free")
    start = time.perf_counter()
    done = self.inpainter(photo, hole)
    seconds = time.perf_counter() - start
    crops = "; ".join(f.describe() for f in done.frames)
    lines = [f"Completed {photo.shape[1]}×{photo.shape[0]} in {seconds:.2f} s · {done.faces} face(s) found · "
             f"{done.hole.sum():,} pixels filled · crop: {crops}"]
    lines += [f"Note: {note}" for note in done.notes]
    return Completed(photo, framing.draw_frames(photo, done.frames, done.hole), crop_strip(done.crops),
                     done.image, done.hole, "\n\n".join(lines))

  def warm_up(self, photo: np.ndarray) -> float:
    """Compile the network and the detector's pyramid for `photo`'s size (the sample faces' 178×218)."""
    start = time.perf_counter()
    hole = np.zeros(photo.shape[:2], bool)
    h, w = hole.shape
    hole[h * 2 // 5:h // 2, w // 3:w * 2 // 3] = True
    self.inpainter(photo, hole)
    if self.attentive:
      try:
        self.inpainter(photo, None)
      except UserError:
        pass  # an undamaged face may have no damage to find; the programs are compiled all the same
    return time.perf_counter() - start


def example_files(cache_dir: str, out_dir: pathlib.Path) -> tuple[list[str], str]:
  """The example photos (copies of held-out sample faces) and the white-damaged mask-free example."""
  from faceinpaint_jax import assets
  from faceinpaint_jax.data.preprocess import decode_image
  faces = assets.sample_faces_dir(cache_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for name in EXAMPLE_FACES:
    path = out_dir / name.replace(".jpg", ".png")
    Image.fromarray(decode_image(str(faces / name))).save(path)
    paths.append(str(path))
  name, (x1, y1, x2, y2) = MASK_FREE_EXAMPLE
  damaged = decode_image(str(faces / name)).copy()
  damaged[y1:y2, x1:x2] = 255
  path = out_dir / f"white_hole_{pathlib.Path(name).stem}.png"
  Image.fromarray(damaged).save(path)
  return paths, str(path)


def build_app(model: DemoModel, examples: list[str], mask_free_example: str, output_dir: pathlib.Path):
  """The Gradio page. Everything it computes comes from `model.complete`."""
  import gradio as gr

  from faceinpaint_jax.inpaint import write_png

  def page_error(error: UserError):
    """A message in a box on the page that stays until closed (the text is escaped: it may quote input)."""
    return gr.Error(html.escape(str(error)), duration=None, print_exception=False)

  def read_editor(payload):
    """The image editor's upload, decoded by the project's reader (an unreadable or too large file is a
    message on the page, not a stack trace), and the paths of its brush layers."""
    if payload is None or payload.background is None:
      return None
    try:
      photo = read_photo(payload.background.path)
    except UserError as e:
      raise page_error(e) from None
    return {"photo": photo, "layers": [layer.path for layer in payload.layers or ()]}

  def run(editor_value, mode):
    try:
      if editor_value is None:
        raise UserError("upload a photo first (or pick an example below)")
      photo = editor_value["photo"]
      hole = None
      if mode == MODES[0]:
        hole = brushed_hole(editor_value["layers"], photo.shape[:2])
      done = model.complete(photo, hole)
    except UserError as e:
      raise page_error(e) from None
    folder = output_dir / f"{int(time.time() * 1000)}"
    result_png, mask_png = folder / "result.png", folder / "mask.png"
    write_png(done.result, result_png)
    write_png(done.hole.astype(np.uint8) * 255, mask_png)
    return (done.photo, done.mask_view, done.crop_view, str(result_png), [str(result_png), str(mask_png)],
            done.message)

  with gr.Blocks(title="faceinpaint_jax", analytics_enabled=False) as app:
    gr.Markdown("# Face completion (self-attention GAN)\n" + model.describe() +
                f"\n\nUpload a photo (up to {MAX_UPLOAD_MB} MB and {MAX_PIXELS / 1e6:.0f} megapixels), brush "
                "over what should go, press **Complete**. Or choose **mask-free** and let the attentive "
                "module find the damage.")
    with gr.Row():
      with gr.Column(scale=3):
        editor = gr.ImageEditor(label="Photo — brush over the damage", type="filepath", image_mode="RGBA",
                                sources=["upload", "clipboard"], transforms=(), layers=False,
                                brush=gr.Brush(colors=["rgb(255, 0, 255)"], color_mode="fixed", default_size=12),
                                elem_id="photo_editor", buttons=["fullscreen"])
        # On the instance, not a subclass: Gradio treats a subclass as a custom component (and writes a
        # .pyi stub beside this module).
        editor.preprocess = read_editor
      with gr.Column(scale=1):
        mode = gr.Radio(list(MODES if model.attentive else MODES[:1]), value=MODES[0], label="Damage",
                        elem_id="mode")
        button = gr.Button("Complete", variant="primary", elem_id="complete")
        status = gr.Markdown(elem_id="status")
    with gr.Row():
      shown_photo = gr.Image(label="Photo", format="png", interactive=False, elem_id="out_photo", buttons=VIEW_BUTTONS)
      mask_view = gr.Image(label="Mask used (red) and the face crops", format="png", interactive=False,
                           elem_id="out_mask", buttons=VIEW_BUTTONS)
      crop_view = gr.Image(label="Face crop the network saw", format="png", interactive=False, elem_id="out_crop", buttons=VIEW_BUTTONS)
      result = gr.Image(label="Result (full resolution)", type="filepath", format="png", interactive=False,
                        elem_id="out_result", buttons=VIEW_BUTTONS)
    downloads = gr.File(label="Download: result.png, mask.png", file_count="multiple", interactive=False,
                        elem_id="downloads")
    gr.Examples([[p, MODES[0]] for p in examples] +
                ([[mask_free_example, MODES[1]]] if model.attentive else []),
                inputs=[editor, mode], label="Examples: held-out sample faces (the last one with a white hole, "
                                             "for mask-free)")
    button.click(run, inputs=[editor, mode],
                 outputs=[shown_photo, mask_view, crop_view, result, downloads, status],
                 api_name="complete", concurrency_limit=1)
  return app


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.demo", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="a training run's directory (config.json + checkpoints)")
  ap.add_argument("--port", type=int, default=7860)
  ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
  ap.add_argument("--step", type=int, default=None, help="a kept checkpoint step (default: the latest)")
  ap.add_argument("--detector-weights", default="",
                  help="a folder with MTCNN's pnet.pt, rnet.pt, onet.pt (default: the pinned download)")
  args = ap.parse_args(argv)
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no version check either
  try:
    import gradio  # noqa: F401
  except ImportError:
    print('error: the demo needs Gradio: pip install -e ".[demo]"', file=sys.stderr)
    return USER_ERROR_EXIT
  started = time.perf_counter()
  try:
    model = DemoModel(args.workdir, args.step, args.detector_weights)
    output_dir = pathlib.Path(tempfile.mkdtemp(prefix="faceinpaint_demo_"))
    examples, mask_free_example = example_files(model.inpainter.config.data.cache_dir, output_dir / "examples")
    compile_seconds = model.warm_up(read_photo(examples[0]))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return USER_ERROR_EXIT
  app = build_app(model, examples, mask_free_example, output_dir)
  print(f"loaded {args.workdir} (step {model.inpainter.step}); compiled in {compile_seconds:.1f} s; "
        f"ready {time.perf_counter() - started:.1f} s after start", flush=True)
  try:
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=False, show_error=True, quiet=True,
        max_file_size=f"{MAX_UPLOAD_MB}mb", allowed_paths=[str(output_dir)], footer_links=[])
  except OSError as e:
    print(f"error: cannot serve on {args.host}:{args.port} ({e})", file=sys.stderr)
    return USER_ERROR_EXIT
  return 0


if __name__ == "__main__":
  sys.exit(main())
