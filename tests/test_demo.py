"""The browser demo (`python -m faceinpaint_jax.demo`): a real server started by its command line, driven in
headless Chromium (Debian's chromium + chromium-driver) and through Gradio's Python client.

The model is the tiny config trained in stage 1 long enough (200 steps) for A_N to find a white hole, so
mask-free mode has something to find. FACEINPAINT_DEMO_WORKDIR=DIR serves DIR instead (the README's
screenshot is taken that way, with the quickstart model); FACEINPAINT_DEMO_SCREENSHOT=PATH keeps the
browser test's screenshot of the page in use.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, free_port
from faceinpaint_jax import assets
from faceinpaint_jax.data.preprocess import decode_image
from faceinpaint_jax.demo import MASK_FREE_EXAMPLE

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
READY_WITHIN_S = 60  # the bound from start to a page that answers
EYES = (55, 84, 125, 108)  # x1, y1, x2, y2 of a rectangle over the eyes of the sample faces (178×218)
WHITE_HOLE = MASK_FREE_EXAMPLE[1]  # the page's own mask-free example's white hole


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory) -> str:
  if os.environ.get("FACEINPAINT_DEMO_WORKDIR"):
    return os.environ["FACEINPAINT_DEMO_WORKDIR"]
  from faceinpaint_jax.config import load_config_file
  from faceinpaint_jax.train.loop import train_and_evaluate
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  config.train.steps = config.train.stage1_steps = config.train.checkpoint_every = 200
  config.train.log_every = 100
  workdir = str(tmp_path_factory.mktemp("demo_model"))
  assert train_and_evaluate(config, workdir) == 0
  return workdir


@pytest.fixture(scope="module")
def server(demo_workdir):
  """`python -m faceinpaint_jax.demo` on a free port; yields its URL once the page answers."""
  port = free_port()
  started = time.monotonic()
  proc = subprocess.Popen([sys.executable, "-m", "faceinpaint_jax.demo", "--workdir", demo_workdir,
                           "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  url = f"http://127.0.0.1:{port}/"
  while True:
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    try:
      with urllib.request.urlopen(url, timeout=2) as response:
        if response.status == 200:
          break
    except OSError:
      pass
    assert time.monotonic() - started < READY_WITHIN_S, "the page did not answer within 60 s of start"
    time.sleep(0.5)
  print(f"page answered {time.monotonic() - started:.1f} s after start")
  yield url
  proc.terminate()
  proc.wait(timeout=30)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
  """A sample face at its own 178×218, a larger non-square photo of another (the face ×2 on a wide
  background) and the sample face with a white hole over the eyes (for mask-free mode)."""
  folder = tmp_path_factory.mktemp("photos")
  faces = assets.sample_faces_dir()
  face = decode_image(str(faces / "000950.jpg"))
  big_face = np.asarray(Image.fromarray(decode_image(str(faces / "000912.jpg"))).resize((356, 436), Image.BICUBIC))
  wide = np.pad(big_face, ((12, 12), (150, 94), (0, 0)), mode="reflect")  # 600×460
  white = face.copy()
  x1, y1, x2, y2 = WHITE_HOLE
  white[y1:y2, x1:x2] = 255
  paths = {}
  for name, image in (("face", face), ("wide", wide), ("white_hole", white)):
    paths[name] = folder / f"{name}.png"
    Image.fromarray(image).save(paths[name])
  return paths


def _read_png(url: str) -> np.ndarray:
  with urllib.request.urlopen(url, timeout=30) as response:
    return np.asarray(Image.open(response).convert("RGB"))


# -- the page in a real browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
  for path in (CHROMIUM, CHROMEDRIVER):
    assert os.path.exists(path), f"{path} missing: apt-get install chromium chromium-driver"
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  # No background traffic: this machine has no network, and the page must not need one.
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1400,1250"):
    options.add_argument(flag)
  options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()


def _wait(condition, timeout: float = 60.0, what: str = "the page"):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(0.2)
  raise AssertionError(f"timed out waiting for {what}")


def _complete_in_browser(driver, url: str, photo: pathlib.Path, brush_box=None) -> dict:
  """Open the page, upload `photo`, brush over `brush_box` (photo pixels) or choose mask-free, press
  Complete, and read back the result and the mask the server used."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  driver.get(url)
  editor = _wait(lambda: driver.find_elements(By.ID, "photo_editor"), what="the editor")[0]
  _wait(lambda: editor.find_elements(By.CSS_SELECTOR, "input[type=file]"))[0].send_keys(str(photo))
  _wait(lambda: editor.find_elements(By.CSS_SELECTOR, "canvas"), what="the canvas")
  readings = []

  def settled_zoom():  # the editor fits the photo to the canvas after the upload: wait until it has
    spans = editor.find_elements(By.CSS_SELECTOR, ".zoom-number span")
    readings.append(spans[0].text.strip() if spans else "")
    return readings[-1] if len(readings) >= 3 and readings[-1] and len(set(readings[-3:])) == 1 else None
  zoom = float(_wait(settled_zoom, what="the zoom level").rstrip("%")) / 100
  width, height = Image.open(photo).size
  canvas = editor.find_elements(By.CSS_SELECTOR, "canvas")[-1]
  if brush_box is None:
    driver.find_element(By.XPATH, "//label[contains(., 'mask-free')]").click()
  else:
    brush = [b for b in editor.find_elements(By.CSS_SELECTOR, "button") if b.get_attribute("aria-label") == "Brush"]
    if brush and "highlight" not in (brush[0].get_attribute("class") or ""):
      brush[0].click()
    x1, y1, x2, y2 = brush_box
    offset = lambda x, y: (round((x - width / 2) * zoom), round((y - height / 2) * zoom))
    for y in range(y1 + 4, y2 - 3, 6):  # strokes 6 px apart with a 12 px brush: the rectangle is covered
      chain = ActionChains(driver).move_to_element_with_offset(canvas, *offset(x1 + 4, y)).click_and_hold()
      for x in np.linspace(x1 + 4, x2 - 4, 6)[1:]:
        chain = chain.move_to_element_with_offset(canvas, *offset(x, y))
      chain.release().perform()
  driver.find_element(By.ID, "complete").click()
  clicked = time.monotonic()

  def result_or_message():
    images = driver.find_elements(By.CSS_SELECTOR, "#out_result img")
    if images and images[0].get_attribute("src"):
      return images[0].get_attribute("src")
    toasts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']") if t.text]
    if toasts:
      raise AssertionError(f"the page says: {toasts}")
    return None
  result = _wait(result_or_message, timeout=120, what="the result")
  seconds = time.monotonic() - clicked
  links = _wait(lambda: [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")
                         if a.get_attribute("href")], what="the download links")
  mask_url = next(h for h in links if h.split("?")[0].endswith("mask.png"))
  status = driver.find_element(By.ID, "status").text
  return {"result": _read_png(result), "mask": _read_png(mask_url)[..., 0] > 127, "status": status,
          "seconds": seconds}


def _external_requests(driver) -> list[str]:
  import json
  urls = []
  for entry in driver.get_log("performance"):
    message = json.loads(entry["message"])["message"]
    if message["method"] == "Network.requestWillBeSent":
      url = message["params"]["request"]["url"]
      if not url.startswith(("http://127.0.0.1", "data:", "blob:")):
        urls.append(url)
  return urls


@pytest.mark.slow
def test_brushed_and_mask_free_completion_in_a_real_browser(server, browser, photos, tmp_path):
  """Upload, brush a rectangle over the eyes, Complete: the result has the upload's size and every pixel
  outside the brushed region is the upload's; on a 178×218 sample face and a larger 600×460 photo. Then
  mask-free on a white hole: the model's own mask covers it and nothing outside that mask changes."""
  for name, box in (("wide", None), ("face", EYES)):
    photo = np.asarray(Image.open(photos[name]).convert("RGB"))
    if box is None:  # the eyes of the larger photo's face: the sample face's eyes ×2, shifted by the padding
      box = (150 + 2 * EYES[0], 12 + 2 * EYES[1], 150 + 2 * EYES[2], 12 + 2 * EYES[3])
    got = _complete_in_browser(browser, server, photos[name], box)
    print(f"{name} {photo.shape[1]}×{photo.shape[0]}: button to result {got['seconds']:.2f} s; {got['status']}")
    result, mask = got["result"], got["mask"]
    assert result.shape == photo.shape and mask.shape == photo.shape[:2], (name, result.shape)
    # The mask the server used is what was brushed: inside the rectangle grown by the brush's radius,
    # covering its middle.
    x1, y1, x2, y2 = box
    grown = np.zeros(mask.shape, bool)
    grown[max(0, y1 - 14):y2 + 14, max(0, x1 - 14):x2 + 14] = True
    assert mask.any() and not (mask & ~grown).any(), name
    assert mask[y1 + 6:y2 - 6, x1 + 6:x2 - 6].all(), name
    np.testing.assert_array_equal(result[~mask], photo[~mask])
    assert (result[mask] != photo[mask]).any()
    assert "face(s) found" in got["status"]
    if name == "face":
      browser.save_screenshot(str(tmp_path / "demo.png"))

  white = np.asarray(Image.open(photos["white_hole"]).convert("RGB"))
  got = _complete_in_browser(browser, server, photos["white_hole"], None)
  result, mask = got["result"], got["mask"]
  assert result.shape == white.shape
  x1, y1, x2, y2 = WHITE_HOLE
  hole = np.zeros(mask.shape, bool)
  hole[y1:y2, x1:x2] = True
  np.testing.assert_array_equal(result[~mask], white[~mask])
  assert (mask & hole).sum() / (mask | hole).sum() > 0.8
  assert not (result[hole] == 255).all(-1).any(), "white pixels of the hole left behind"
  assert _external_requests(browser) == []  # nothing fetched from outside
  if os.environ.get("FACEINPAINT_DEMO_SCREENSHOT"):
    shutil.copy(tmp_path / "demo.png", os.environ["FACEINPAINT_DEMO_SCREENSHOT"])


# -- bad input through Gradio's client -------------------------------------------------------------

def _layer(shape, box=None) -> np.ndarray:
  layer = np.zeros(shape + (4,), np.uint8)
  if box is not None:
    x1, y1, x2, y2 = box
    layer[y1:y2, x1:x2] = (255, 0, 255, 255)
  return layer


@pytest.mark.slow
def test_bad_input_is_a_message_and_the_server_keeps_serving(server, photos, tmp_path):
  from gradio_client import Client, handle_file
  from gradio_client.exceptions import AppError
  client = Client(server, verbose=False)
  face = np.asarray(Image.open(photos["face"]))

  def save(name, array):
    Image.fromarray(array).save(tmp_path / name)
    return handle_file(str(tmp_path / name))

  def complete(background, layers=(), mode="brushed mask"):
    return client.predict({"background": background, "layers": list(layers), "composite": None}, mode,
                          api_name="/complete")

  eyes = save("eyes.png", _layer(face.shape[:2], EYES))
  (tmp_path / "notes.png").write_text("not an image")
  heavy = tmp_path / "heavy.png"  # 9 megapixels of noise: 27 MB, over the 25 MB upload limit
  Image.fromarray(np.random.default_rng(1).integers(0, 256, (3000, 3000, 3), np.uint8)).save(heavy)
  huge = tmp_path / "huge.png"
  Image.new("RGB", (6001, 6001)).save(huge)  # 36 megapixels + 1 row and column, a small file
  noise = save("noise.png", np.random.default_rng(0).integers(0, 256, (218, 178, 3), np.uint8))
  bad = {
      # Gradio's client checks the page's limit before sending (the server refuses it too: HTTP 413).
      "over 25 MB": ((handle_file(str(heavy)), []), "exceeds the maximum file size of 26214400 bytes"),
      "unreadable": ((handle_file(str(tmp_path / "notes.png")), [eyes]), "not a readable image"),
      "huge": ((handle_file(str(huge)), []), "the limit is 36 megapixels"),
      "empty brush": ((handle_file(str(photos["face"])), []), "the brush mask is empty"),
      "mask over the whole face": ((handle_file(str(photos["face"])),
                                    [save("all.png", _layer(face.shape[:2], (10, 30, 168, 200)))]),
                                   "of a face crop"),
      "no face, mask-free": ((noise, [], "mask-free (the model finds the damage)"), "no face found"),
  }
  for what, (args, expected) in bad.items():
    with pytest.raises(ValueError if what == "over 25 MB" else AppError) as error:
      complete(*args)
    assert expected in str(error.value), (what, str(error.value))
    # The next valid request still succeeds.
    out = complete(handle_file(str(photos["face"])), [eyes])
    result = np.asarray(Image.open(out[3]))
    mask = np.asarray(Image.open(out[4][1]).convert("L")) > 127
    assert result.shape == face.shape and mask[EYES[1]:EYES[3], EYES[0]:EYES[2]].all()
    np.testing.assert_array_equal(result[~mask], face[~mask])
