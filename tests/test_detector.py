"""MTCNN in Flax against facenet-pytorch's original (tests/fixtures/make_mtcnn_reference.py): the three
networks' raw outputs, and the whole cascade's boxes, probabilities and landmarks on real faces."""

import os

import numpy as np
import pytest

from faceinpaint_jax.detector import MTCNN, load_mtcnn_variables
from faceinpaint_jax.detector.mtcnn import ONet, PNet, RNet, area_resize, max_pool_ceil, nms

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "mtcnn_reference.npz")


@pytest.fixture(scope="module")
def reference():
  return np.load(FIXTURE)


@pytest.fixture(scope="module")
def variables():
  return load_mtcnn_variables()


def test_the_three_networks_match_the_original(reference, variables):
  for name, net, outputs in (("pnet", PNet(), ("regression", "probs")),
                             ("rnet", RNet(), ("regression", "probs")),
                             ("onet", ONet(), ("regression", "landmarks", "probs"))):
    ours = net.apply(variables[name], reference[f"{name}_input"])
    for key, value in zip(outputs, ours):
      theirs = reference[f"{name}_{key}"]
      assert value.shape == theirs.shape, (name, key)
      np.testing.assert_allclose(np.asarray(value), theirs, atol=2e-5, err_msg=f"{name} {key}")


def test_detections_match_the_original_cascade(reference, variables):
  detector = MTCNN(variables)
  names = [k[6:] for k in reference.files if k.startswith("image_")]
  assert set(names) == {"000900", "000950", "pair", "wide_tilted"}
  for name in names:
    faces = detector(reference[f"image_{name}"])
    boxes, scores = reference[f"boxes_{name}"], reference[f"scores_{name}"]
    assert len(faces) == len(boxes), name
    order = np.argsort(-scores, kind="stable")
    for face, i in zip(faces, order):
      np.testing.assert_allclose(face.box, boxes[i], atol=1e-3, err_msg=name)
      np.testing.assert_allclose(face.landmarks, reference[f"landmarks_{name}"][i], atol=1e-3, err_msg=name)
      assert abs(face.score - scores[i]) < 1e-5
  # The pair holds two faces; the tilted one's eyes are not level (12°).
  assert len(detector(reference["image_pair"])) == 2
  (tilted,) = detector(reference["image_wide_tilted"])
  dx, dy = tilted.landmarks[1] - tilted.landmarks[0]
  assert 8 < np.degrees(np.arctan2(-dy, dx)) < 16


def test_ceil_mode_pooling_keeps_the_partial_last_window():
  x = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1)
  pooled = np.asarray(max_pool_ceil(x, 2, 2))[0, ..., 0]
  np.testing.assert_array_equal(pooled, [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
  assert max_pool_ceil(np.zeros((1, 11, 11, 1)), 3, 2).shape == (1, 5, 5, 1)  # (11 − 3) / 2 + 1


def test_area_resize_averages_the_cells_that_each_output_pixel_covers():
  image = np.arange(5, dtype=np.float32).reshape(5, 1, 1) * np.ones((5, 2, 1), np.float32)
  np.testing.assert_allclose(area_resize(image, 2, 2)[:, 0, 0], [1.0, 3.0])  # rows 0–2 and 2–4
  np.testing.assert_allclose(area_resize(image, 5, 2), image)


def test_nms_union_and_min_overlap():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.95])
  # IoU(0, 1) = 81 / 119 > 0.5; box 3 sits inside box 0 (IoU 0.16, but overlap over the smaller 1.0).
  np.testing.assert_array_equal(nms(boxes, scores, 0.5), [3, 0, 2])
  np.testing.assert_array_equal(nms(boxes, scores, 0.7, method="min"), [3, 2])
