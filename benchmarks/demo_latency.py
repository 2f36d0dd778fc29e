"""How long the demo page makes a user wait: start to a page that answers, the compile before it, and the
button-to-result time through Gradio's client (the request the page's Complete button sends).

  python benchmarks/demo_latency.py --workdir runs/quickstart [--repeats 10]

Photos: a held-out sample face at its own 178×218 (brushed over the eyes, and with a white hole for
mask-free mode) and a 600×460 photo of another, whose first request includes the detector's compile for
a new photo size. Prints one markdown table (docs/DEMO.md quotes it).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

EYES = (55, 84, 125, 108)
WHITE_HOLE = (60, 82, 118, 112)


def _photos(folder: str) -> dict:
  from faceinpaint_jax import assets
  from faceinpaint_jax.data.preprocess import decode_image
  faces = assets.sample_faces_dir()
  face = decode_image(str(faces / "000950.jpg"))
  big = np.asarray(Image.fromarray(decode_image(str(faces / "000912.jpg"))).resize((356, 436), Image.BICUBIC))
  wide = np.pad(big, ((12, 12), (150, 94), (0, 0)), mode="reflect")
  white = face.copy()
  x1, y1, x2, y2 = WHITE_HOLE
  white[y1:y2, x1:x2] = 255
  paths = {}
  for name, image, box in (("face", face, EYES), ("wide", wide, (260, 180, 400, 228)), ("white", white, None)):
    paths[name] = os.path.join(folder, f"{name}.png")
    Image.fromarray(image).save(paths[name])
    layer = np.zeros(image.shape[:2] + (4,), np.uint8)
    if box is not None:
      layer[box[1]:box[3], box[0]:box[2]] = (255, 0, 255, 255)
    paths[name + "_layer"] = os.path.join(folder, f"{name}_layer.png")
    Image.fromarray(layer).save(paths[name + "_layer"])
  return paths


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--port", type=int, default=7871)
  ap.add_argument("--repeats", type=int, default=10)
  args = ap.parse_args()
  from gradio_client import Client, handle_file
  folder = tempfile.mkdtemp(prefix="demo_latency_")
  photos = _photos(folder)
  started = time.monotonic()
  server = subprocess.Popen([sys.executable, "-m", "faceinpaint_jax.demo", "--workdir", args.workdir,
                             "--port", str(args.port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  url = f"http://127.0.0.1:{args.port}/"
  while True:
    if server.poll() is not None:
      sys.exit(server.communicate()[0][-2000:])
    try:
      with urllib.request.urlopen(url, timeout=2):
        break
    except OSError:
      time.sleep(0.2)
  answered = time.monotonic() - started
  line = server.stdout.readline()
  compiled = re.search(r"compiled in ([\d.]+) s", line)
  try:
    client = Client(url, verbose=False)

    def request(name, mode="brushed mask"):
      layers = [handle_file(photos[name + "_layer"])] if mode == "brushed mask" else []
      start = time.perf_counter()
      out = client.predict({"background": handle_file(photos[name]), "layers": layers, "composite": None}, mode,
                           api_name="/complete")
      seconds = time.perf_counter() - start
      inside = float(re.search(r"in ([\d.]+) s", out[5]).group(1))
      return seconds, inside

    rows = []
    for name, mode, label in (("face", "brushed mask", "178×218, brushed"),
                              ("white", "mask-free (the model finds the damage)", "178×218, mask-free"),
                              ("wide", "brushed mask", "600×460, brushed")):
      first = request(name, mode)
      times = [request(name, mode) for _ in range(args.repeats)]
      rows.append((label, first, statistics.median(t for t, _ in times), min(t for t, _ in times),
                   max(t for t, _ in times), statistics.median(i for _, i in times)))
  finally:
    server.terminate()
    server.wait(timeout=30)
  print(f"start → page answers: {answered:.1f} s (compile before the page opens: "
        f"{compiled.group(1) if compiled else '?'} s)\n")
  print("| photo | first request (s) | median (s) | min (s) | max (s) | of which Inpainter (median, s) |")
  print("|---|---|---|---|---|---|")
  for label, first, median, low, high, inside in rows:
    print(f"| {label} | {first[0]:.2f} | {median:.2f} | {low:.2f} | {high:.2f} | {inside:.2f} |")


if __name__ == "__main__":
  main()
