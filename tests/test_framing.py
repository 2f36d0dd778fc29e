"""Framing real photos: the similarity fit, crops that match the training faces' framing, and the paste
back through the inverse transform."""

import numpy as np
import pytest

from faceinpaint_jax import framing


def test_similarity_recovers_a_known_rotation_scale_and_shift():
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 100, (5, 2))
  angle, scale, shift = np.radians(17.0), 0.37, np.array([12.0, -4.0])
  linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  target = points @ linear.T + shift
  matrix = framing.similarity(points, target)
  np.testing.assert_allclose(matrix[:, :2], linear, atol=1e-9)
  np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
  # Mirrored points give no reflection: the determinant stays positive.
  assert np.linalg.det(framing.similarity(points, target * [-1, 1])[:, :2]) > 0


def test_landmark_frame_maps_the_landmarks_onto_the_template_and_drops_hidden_ones():
  size = 64
  true = framing.TEMPLATE * 250 + [40, 60]  # a face 250 px across at (40, 60) in a photo (indices)
  frame = framing.frame_from_landmarks(true, size)
  mapped = true @ frame.matrix[:, :2].T + frame.matrix[:, 2]
  expected = framing.TEMPLATE * size - 0.5  # the template is continuous; the matrix maps indices
  np.testing.assert_allclose(mapped, expected, atol=1e-9)
  assert frame.how == "landmarks" and abs(frame.scale - size / 250) < 1e-9
  # Eyes hidden and guessed badly: the fit on the three others ignores them.
  guessed = true.copy()
  guessed[:2] += [[30, 25], [-20, 40]]
  usable = np.array([False, False, True, True, True])
  frame = framing.frame_from_landmarks(guessed, size, usable)
  assert frame.how == "landmarks (3 of 5)"
  mapped = true @ frame.matrix[:, :2].T + frame.matrix[:, 2]
  np.testing.assert_allclose(mapped, expected, atol=1e-6)
  with pytest.raises(ValueError):
    framing.frame_from_landmarks(true, size, np.array([True, False, False, False, False]))


def test_box_and_hole_frames():
  size = 64
  box = framing.TEMPLATE_BOX * 300 + [10, 20, 10, 20] - 0.5
  frame = framing.frame_from_box(box, size)
  corners = frame.corners()  # the crop is the face's training square: 300 px from (10, 20) on
  np.testing.assert_allclose(corners[0], [9.5, 19.5], atol=1e-9)
  np.testing.assert_allclose(corners[2], [309.5, 319.5], atol=1e-9)
  hole = np.zeros((400, 600), bool)
  hole[100:140, 300:320] = True
  frame = framing.frame_around(hole, size, hole.shape)
  corners = frame.corners()
  np.testing.assert_allclose(corners.mean(axis=0), [309.5, 119.5], atol=1e-9)
  np.testing.assert_allclose(corners[1, 0] - corners[0, 0], 80, atol=1e-9)  # twice the longer side


def test_a_sample_face_framed_by_its_landmarks_looks_like_its_training_crop():
  """The crop of a CelebA face through its own landmarks is close to the centre-square crop the training
  pipeline cuts from it (the template is those faces' mean)."""
  from faceinpaint_jax import assets
  from faceinpaint_jax.data.preprocess import center_square_resize, decode_image
  face = decode_image(str(assets.sample_faces_dir() / "000950.jpg"))
  landmarks = framing.TEMPLATE * 178 - 0.5 + [0, 20]  # the mean face's, as indices in the 178×218 image
  crop = framing.warp_to_crop(face, framing.frame_from_landmarks(landmarks, 64)).astype(np.float64)
  training = center_square_resize(face, 64).astype(np.float64)
  assert np.abs(crop - training).mean() < 1.5  # resampling differences only (0.53 measured)


def test_paste_back_round_trip_and_hole_coverage():
  rng = np.random.default_rng(0)
  photo = np.asarray(np.kron(rng.integers(0, 255, (30, 40, 3)), np.ones((8, 8, 1))), np.uint8)  # 240×320
  frame = framing.frame_from_landmarks(framing.TEMPLATE * 200 + [60, 20], 128)
  crop = framing.warp_to_crop(photo, frame)
  assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
  back, inside = framing.crop_to_photo(crop, frame, photo.shape[:2])
  assert back.shape == photo.shape and inside.shape == photo.shape[:2]
  interior = np.zeros_like(inside)
  interior[40:200, 80:240] = True
  assert inside[interior].all() and not inside[0, 0]
  error = np.abs(back.astype(float) - photo)[interior & inside]
  assert np.median(error) < 8  # resampled twice, blocks stay blocks
  hole = np.zeros(photo.shape[:2], bool)
  hole[100:101, 150:151] = True  # one pixel: still at least one crop pixel
  assert framing.mask_to_crop(hole, frame).sum() >= 1
