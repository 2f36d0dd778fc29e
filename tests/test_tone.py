"""Old photos: grey and sepia prints, the monochrome test, and fills that follow the photo's tone and grain."""

import numpy as np

from faceinpaint_jax import assets, tone
from faceinpaint_jax.data.preprocess import center_square_resize, decode_image


def _face(name="000950.jpg", size=64):
  return center_square_resize(decode_image(str(assets.sample_faces_dir() / name)), size)


def _hole(size=64):
  hole = np.zeros((size, size), bool)
  hole[size // 4:3 * size // 4, size // 4:3 * size // 4] = True
  return hole


def test_grey_and_sepia_prints_are_monochrome_and_colour_faces_are_not():
  face, hole = _face(), _hole()
  grey, sepia = tone.apply_tone(face, "grey"), tone.apply_tone(face, "sepia")
  assert np.all(grey[..., 0] == grey[..., 1]) and tone.chroma(grey).max() < 0.6
  assert tone.chroma(sepia).mean() > 10  # toned, not grey
  for image, monochrome in ((grey, True), (sepia, True), (face, False)):
    assert (tone.tone_curve(image, ~hole)[2] <= tone.MONOCHROME_RMS) == monochrome


def test_a_colour_fill_in_a_grey_or_sepia_photo_takes_the_photo_s_tone_and_keeps_its_brightness():
  face, hole = _face(), _hole()
  for kind in tone.TONES:
    print_ = tone.apply_tone(face, kind)
    filled = print_.copy()
    filled[hole] = face[hole]  # a network's colour fill
    out = tone.follow_tone(filled, hole)
    np.testing.assert_array_equal(out[~hole], print_[~hole])  # known pixels untouched
    assert abs(np.mean(tone.luma(out[hole]) - tone.luma(face[hole]))) < 1.0  # same brightness (grain aside)
    ring = np.zeros_like(hole)
    ring[12:52, 12:52] = True
    ring &= ~hole
    if kind == "grey":
      assert tone.chroma(out[hole]).max() < 1.0
    else:  # the sepia tone: chroma of the fill as the known pixels' at its brightness, not skin
      assert abs(tone.chroma(out[hole]).mean() - tone.chroma(print_[ring]).mean()) < 4
      assert abs(tone.chroma(out[hole]).mean() - tone.chroma(face[hole]).mean()) > 5
  np.testing.assert_array_equal(tone.follow_tone(face, hole), face)  # a colour photo is left alone


def test_grain_is_added_where_the_photo_is_grainier_than_the_fill():
  rng = np.random.default_rng(0)
  grey = tone.apply_tone(_face(size=128), "grey").astype(float)
  hole = _hole(128)
  grainy = np.clip(grey + rng.normal(0, 12, grey.shape[:2])[..., None], 0, 255).astype(np.uint8)
  smooth_fill = grainy.copy()
  smooth_fill[hole] = grey.astype(np.uint8)[hole]  # a fill without grain
  out = tone.follow_tone(smooth_fill, hole)
  before = tone._grain(tone.luma(smooth_fill), hole)
  after = tone._grain(tone.luma(out), hole)
  target = tone._grain(tone.luma(grainy), ~hole)
  assert before < 0.6 * target and abs(after - target) < 0.1 * target, (before, after, target)
