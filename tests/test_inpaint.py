"""inpaint on photos that are not training crops: face framing, several faces, no face, mask-free mode,
folders and bad input — output size, untouched known pixels and one-line errors."""

import numpy as np
import pytest
from PIL import Image

from faceinpaint_jax import assets, inpaint
from faceinpaint_jax.data.preprocess import decode_image


def _portrait(scale=1.6, angle=10.0, canvas=(520, 420), at=(150, 60)):
  """Sample face 000950 enlarged and tilted on a grey canvas; also its landmarks there (from the template)."""
  face = Image.fromarray(decode_image(str(assets.sample_faces_dir() / "000950.jpg")))
  big = face.resize((int(178 * scale), int(218 * scale)), Image.Resampling.BICUBIC)
  tilted = big.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
  photo = Image.new("RGB", canvas, (128, 128, 128))
  photo.paste(tilted, at)
  return np.asarray(photo)


def _hole_over(photo, x, y, w, h):
  mask = np.zeros(photo.shape[:2], bool)
  mask[y:y + h, x:x + w] = True
  return mask


def _save(tmp_path, name, array):
  path = tmp_path / name
  Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1)).save(path)
  return path


@pytest.mark.slow
def test_the_face_is_framed_and_only_the_hole_changes(trained_workdir, tmp_path, capsys):
  photo = _portrait()
  mask = _hole_over(photo, 230, 230, 120, 45)  # over the (tilted, enlarged) eyes
  out, debug = tmp_path / "out.png", tmp_path / "crops.png"
  code = inpaint.main(["--workdir", trained_workdir, "--input", str(_save(tmp_path, "p.png", photo)),
                       "--mask", str(_save(tmp_path, "m.png", mask)), "--output", str(out),
                       "--debug-crops", str(debug)])
  printed = capsys.readouterr()
  assert code == 0, printed.err
  got = np.asarray(Image.open(out))
  assert got.shape == photo.shape
  np.testing.assert_array_equal(got[~mask], photo[~mask])
  assert not np.array_equal(got[mask], photo[mask])
  assert "1 face(s) found" in printed.out and "landmarks" in printed.out and "warning" not in printed.err
  assert np.asarray(Image.open(debug)).shape == photo.shape


def test_the_crop_follows_the_head_s_tilt_and_size(trained_workdir):
  """Through the detector: the chosen crop is rotated by the head's tilt and scaled with the face, and
  hidden eyes fall back to the other landmarks."""
  painter = inpaint.Inpainter(trained_workdir)
  for angle, scale in ((0.0, 1.0), (12.0, 1.6)):
    photo = _portrait(scale=scale, angle=angle)
    (frame,), faces = painter.face_frames(photo, None)
    corners = frame.corners()
    tilt = np.degrees(np.arctan2(*(corners[1] - corners[0])[::-1]))
    side = np.linalg.norm(corners[1] - corners[0])
    assert faces == 1 and abs(tilt + angle) < 3, (tilt, angle)  # PIL rotates counter-clockwise
    assert abs(side - 178 * scale) < 0.08 * 178 * scale, side
  (face,) = painter.detector(photo)
  (left, right), span = face.landmarks[:2], np.linalg.norm(face.landmarks[1] - face.landmarks[0])
  x, y = (left + right) / 2
  eyes = _hole_over(photo, int(x - 0.8 * span), int(y - 0.25 * span), int(1.6 * span), int(0.5 * span))
  (hidden,), _ = painter.face_frames(photo, eyes)
  assert hidden.how == "landmarks (3 of 5)"  # nose and mouth corners place the crop
  # ... near where all five put it: corners within 15 % of the side (measured 11 %: nose and mouth fix
  # the tilt less well than the eyes).
  assert np.abs(hidden.corners() - frame.corners()).max() < 0.15 * side


@pytest.mark.slow
def test_several_faces_no_face_and_a_hole_outside_every_face(trained_workdir, tmp_path, capsys):
  one = _portrait(scale=1.0, angle=0.0, canvas=(300, 260), at=(60, 20))
  two = np.concatenate([one, one], axis=1)
  painter = inpaint.Inpainter(trained_workdir)
  mouth = _hole_over(two, 100, 160, 60, 25)  # the left face's mouth only
  done = painter(two, mouth)
  assert done.faces == 2 and len(done.frames) == 1 and done.frames[0].how.startswith("landmarks")
  np.testing.assert_array_equal(done.image[~mouth], two[~mouth])
  both = mouth | _hole_over(two, 400, 160, 60, 25)
  assert len(painter(two, both).frames) == 2
  corner = _hole_over(two, 5, 230, 20, 20)  # background, outside both faces' crops
  done = painter(two, corner)
  assert [f.how for f in done.frames] == ["hole"] and done.notes
  np.testing.assert_array_equal(done.image[~corner], two[~corner])
  noise = np.random.default_rng(0).integers(0, 255, (200, 240, 3), np.uint8)
  hole = _hole_over(noise, 100, 80, 40, 30)
  done = painter(noise, hole)
  assert done.faces == 0 and done.notes == ["no face found"] and done.frames[0].how == "hole"
  np.testing.assert_array_equal(done.image[~hole], noise[~hole])
  assert inpaint.Inpainter(trained_workdir, detect=False)(noise, hole).notes == []


def test_bad_input_is_one_line_and_writes_nothing(trained_workdir, tmp_path, capsys):
  noise = np.random.default_rng(0).integers(0, 255, (200, 240, 3), np.uint8)
  photo = _save(tmp_path, "noise.png", noise)
  mask = _save(tmp_path, "m.png", _hole_over(noise, 10, 10, 30, 30))
  small = _save(tmp_path, "small.png", np.zeros((50, 50), bool) | True)
  (tmp_path / "broken.png").write_bytes(b"not an image")
  out = tmp_path / "out.png"
  cases = [
      ([], "no face found and no --mask"),  # mask-free, and nothing to frame
      (["--mask", str(small)], "but the photo is"),
      (["--mask", str(mask), "--face-box", "10,10,5,50"], "--face-box"),
      (["--mask", str(mask), "--face-box", "a,b"], "--face-box"),
      (["--mask", str(tmp_path / "missing.png")], "mask not found"),
  ]
  for extra, message in cases:
    code = inpaint.main(["--workdir", trained_workdir, "--input", str(photo), "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
  code = inpaint.main(["--workdir", trained_workdir, "--input", str(tmp_path / "broken.png"), "--output", str(out)])
  assert code == 2 and "not a readable image" in capsys.readouterr().err
  assert not out.exists()


@pytest.mark.slow
def test_a_folder_skips_bad_files_with_a_line_each_and_reports(trained_workdir, tmp_path, capsys):
  photos, masks, done = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
  photos.mkdir(), masks.mkdir()
  portrait = _portrait(scale=1.0, angle=0.0, canvas=(300, 260), at=(60, 20))
  _save(photos, "a.png", portrait)
  _save(masks, "a.png", _hole_over(portrait, 100, 160, 60, 25))
  _save(photos, "b.png", portrait)
  _save(masks, "b.png", np.zeros((10, 10), bool))  # another size
  (photos / "c.png").write_bytes(b"broken")
  code = inpaint.main(["--workdir", trained_workdir, "--input", str(photos), "--mask", str(masks),
                       "--output", str(done)])
  printed = capsys.readouterr()
  assert code == 0
  assert sorted(p.name for p in done.iterdir()) == ["a.png"]
  assert "skipped b.png" in printed.err and "skipped c.png" in printed.err
  assert "inpainted 1 of 3 photo(s)" in printed.out and "skipped 2" in printed.out and "faces found 1" in printed.out
