"""Sources, masks and the deterministic input pipeline."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faceinpaint_jax.data import InputPipeline, SourceError, make_source
from faceinpaint_jax.data import masks as masks_lib
from faceinpaint_jax.data.preprocess import BadImageError, center_square_resize, decode_image
from faceinpaint_jax.data.sources import split_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pipeline(config, **kw):
  kw.setdefault("process_index", 0)
  kw.setdefault("process_count", 1)
  return InputPipeline(config, **kw)


def _equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sample_source_splits(tiny_config):
  source = make_source(tiny_config.data)
  train, test = source.split("train"), source.split("test")
  assert (len(train), len(test)) == (899, 100)
  assert set(train.keys).isdisjoint(test.keys)
  assert train.key(0) == "000001.jpg" and test.key(99) == "000999.jpg"
  assert train.load(0).shape == (218, 178, 3)


def test_batches_are_a_pure_function_of_step(tiny_config):
  p1, p2 = _pipeline(tiny_config), _pipeline(tiny_config)
  _equal(p1.batch(7), p2.batch(7))
  assert not np.array_equal(p1.batch(0)["image"], p1.batch(1)["image"])
  assert not np.array_equal(p1.batch(0)["hole_mask"], p1.batch(1)["hole_mask"])
  b = p1.batch(0)
  size = tiny_config.data.image_size
  assert b["image"].shape == (4, size, size, 3) and b["image"].dtype == np.float32
  assert b["hole_mask"].shape == (4, size, size, 1)
  assert b["image"].min() >= -1 and b["image"].max() <= 1


def test_resume_needs_no_replay(tiny_config):
  pipeline = _pipeline(tiny_config)
  straight = dict(pipeline.iterate(0, 6))
  resumed = dict(_pipeline(tiny_config).iterate(3, 6))
  assert sorted(resumed) == [3, 4, 5]
  for step in resumed:
    _equal(straight[step], resumed[step])


def test_epochs_cover_the_split_once(tiny_config):
  tiny_config.train.batch_size = 31
  pipeline = _pipeline(tiny_config)
  n = len(pipeline)
  seen = [pipeline.example_index(s, j) for s in range(-(-n // 31)) for j in range(31)][:n]
  assert sorted(seen) == list(range(n))


def test_process_slices_partition_the_global_batch(tiny_config):
  whole = _pipeline(tiny_config).batch(5)
  parts = [_pipeline(tiny_config, process_index=i, process_count=2).batch(5) for i in range(2)]
  _equal(whole, {k: np.concatenate([p[k] for p in parts]) for k in whole})


def test_training_masks_in_range_and_window_contains_hole(tiny_config):
  tiny_config.data.image_size = 128
  tiny_config.train.batch_size = 16
  pipeline = _pipeline(tiny_config)
  for step in range(6):
    b = pipeline.batch(step)
    for mask, (y, x), image, damaged in zip(b["hole_mask"], b["window_offset"], b["image"], b["damaged"]):
      rows, cols = np.nonzero(mask[..., 0])
      h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
      assert 24 <= h <= 64 and 24 <= w <= 64
      assert mask.sum() == h * w  # one solid rectangle
      assert 0 <= y <= 64 and 0 <= x <= 64
      assert mask[y:y + 64, x:x + 64].sum() == mask.sum()
      np.testing.assert_array_equal(damaged[mask[..., 0] > 0], 1.0)  # white hole (§3.4.1)
      np.testing.assert_array_equal(damaged[mask[..., 0] == 0], image[mask[..., 0] == 0])


def test_protocol_masks():
  center = masks_lib.protocol_mask("center", None, 128)
  assert center.sum() == 64 * 64 and center[32:96, 32:96].all()
  rng = np.random.default_rng(0)
  for _ in range(20):
    m = masks_lib.protocol_mask("fixed_size_random_position", rng, 128)
    assert m.sum() == 64 * 64
  sizes = [masks_lib.protocol_mask("growing", None, 128, i).sum() ** 0.5 for i in range(6)]
  assert sizes == [16, 32, 48, 64, 80, 96]
  assert masks_lib.protocol_mask("center", None, 64).sum() == 32 * 32  # scaled with image size


def test_free_form_and_png_masks(tmp_path):
  m = masks_lib.free_form(np.random.default_rng(1), 128)
  assert m.shape == (128, 128, 1) and 0 < m.mean() < 0.6
  png = np.zeros((40, 40), np.uint8)
  png[5:15, 10:30] = 255
  Image.fromarray(png).save(tmp_path / "m.png")
  loaded = masks_lib.load_mask_png(tmp_path / "m.png")
  assert loaded.shape == (40, 40, 1) and loaded.sum() == 200


def test_mean_fill():
  """The hole takes the mean colour of the known pixels (per channel); known pixels stay as they were."""
  image = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
  mask = masks_lib.rectangle_mask(8, 2, 2, 3, 3)
  damaged = masks_lib.damage(image, mask, "mean")
  known = mask[..., 0] < 0.5
  expected = image[known].mean(axis=0)
  np.testing.assert_allclose(damaged[~known], np.broadcast_to(expected, (9, 3)), rtol=1e-6)
  np.testing.assert_array_equal(damaged[known], image[known])
  assert not np.allclose(expected, image[~known].mean(axis=0), atol=1e-3)  # not the hole's own mean


def test_every_fill_changes_only_the_hole_and_each_has_its_content():
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32)
  donor = rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32)
  mask = masks_lib.rectangle_mask(16, 4, 3, 6, 7)
  hole = mask[..., 0] > 0.5
  for fill in masks_lib.HOLE_FILLS:
    damaged = masks_lib.damage(image, mask, fill, np.random.default_rng(1), donor)
    assert damaged.dtype == np.float32 and damaged.shape == image.shape
    np.testing.assert_array_equal(damaged[~hole], image[~hole], err_msg=fill)
    inside = damaged[hole]
    if fill == "white":
      np.testing.assert_array_equal(inside, 1.0)
    elif fill == "color":  # one colour, drawn from the generator
      np.testing.assert_array_equal(inside, np.broadcast_to(inside[0], inside.shape))
      assert not np.allclose(inside[0], 1.0)
    elif fill == "noise":  # every pixel its own value, spread over [−1, 1]
      assert len(np.unique(inside)) == inside.size and inside.std() > 0.4
    elif fill == "patch":
      np.testing.assert_array_equal(inside, donor[hole])
  with pytest.raises(ValueError):
    masks_lib.damage(image, mask, "patch", np.random.default_rng(1))
  # A mixture picks each of the five kinds about equally often.
  picks = [masks_lib.choose_fill("mixture", np.random.default_rng(i)) for i in range(500)]
  counts = [picks.count(f) for f in masks_lib.HOLE_FILLS]
  assert min(counts) > 70, counts
  # data.hole_fill_weights sets each kind's share: patch four times as often as each other, white never.
  picks = [masks_lib.choose_fill("mixture", np.random.default_rng(i), (0, 1, 1, 1, 4)) for i in range(1400)]
  counts = dict(zip(masks_lib.HOLE_FILLS, (picks.count(f) for f in masks_lib.HOLE_FILLS)))
  assert counts["white"] == 0 and 700 < counts["patch"] < 900, counts
  assert all(150 < counts[f] < 250 for f in ("mean", "color", "noise")), counts


def test_pipeline_fills_are_seeded_per_example_and_patches_come_from_other_images():
  from faceinpaint_jax.config import load_config_file
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  config.data.hole_fill = "mixture"
  config.train.batch_size = 8
  first, again = _pipeline(config, split="train", training=True), _pipeline(config, split="train", training=True)
  a, b = first.batch(3), again.batch(3)
  first.close(), again.close()
  _equal(a, b)  # a pure function of the step
  hole = a["hole_mask"][..., 0] > 0.5
  inside = [a["damaged"][i][hole[i]] for i in range(len(hole))]
  assert not all(np.all(x == 1.0) for x in inside)  # not everything white
  np.testing.assert_array_equal(a["damaged"][~hole], a["image"][~hole])
  # Evaluation overrides the fill per call, with the same hole, and leaves white untouched.
  pipeline = _pipeline(config, split="test", training=False)
  white = pipeline.evaluation_batch([0, 1], fill="white")
  patch = pipeline.evaluation_batch([0, 1], fill="patch")
  pipeline.close()
  np.testing.assert_array_equal(white["hole_mask"], patch["hole_mask"])
  hole = white["hole_mask"][..., 0] > 0.5
  assert np.all(white["damaged"][hole] == 1.0)
  for i in range(2):  # the patch is another image's pixels, not this one's and not white
    assert not np.allclose(patch["damaged"][i][hole[i]], patch["image"][i][hole[i]])
    assert not np.all(patch["damaged"][i][hole[i]] == 1.0)


def _write_mixed_folder(root):
  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  for i in range(20):
    Image.fromarray(rng.integers(0, 255, (60, 50, 3), np.uint8)).save(root / f"good_{i:02d}.jpg")
  Image.fromarray(rng.integers(0, 255, (60, 60), np.uint8)).save(root / "gray.png")
  (root / "random_bytes.jpg").write_bytes(rng.integers(0, 255, 500, np.uint8).tobytes())
  (root / "text.png").write_text("not an image at all")
  full = (root / "good_00.jpg").read_bytes()
  (root / "truncated.jpg").write_bytes(full[: len(full) // 2])


def test_folder_source_skips_corrupt_files(tmp_path, tiny_config, caplog):
  _write_mixed_folder(tmp_path / "faces")
  tiny_config.data.source = f"folder:{tmp_path / 'faces'}"
  tiny_config.data.cache_dir = str(tmp_path / "cache")
  tiny_config.data.folder_test_fraction = 0.2
  source = make_source(tiny_config.data)
  assert sum(len(s) for s in source.splits.values()) == 21
  assert sorted(f for f, _ in source.skipped) == ["random_bytes.jpg", "text.png", "truncated.jpg"]
  assert sum("skipping" in r.message for r in caplog.records) == 3
  names = [set(s.keys) for s in source.splits.values()]
  assert all(a.isdisjoint(b) for i, a in enumerate(names) for b in names[i + 1:])
  # The split is a stable function of the path.
  again = make_source(tiny_config.data)
  assert {k: v.keys for k, v in again.splits.items()} == {k: v.keys for k, v in source.splits.items()}
  b = _pipeline(tiny_config, source=source).batch(0)
  assert b["image"].shape == (4, 32, 32, 3)


def test_missing_or_empty_folder_fails_with_one_line(tmp_path, tiny_config):
  tiny_config.data.source = f"folder:{tmp_path / 'nope'}"
  with pytest.raises(SourceError, match="not found"):
    make_source(tiny_config.data)
  (tmp_path / "empty").mkdir()
  tiny_config.data.source = f"folder:{tmp_path / 'empty'}"
  tiny_config.data.cache_dir = str(tmp_path / "cache")
  with pytest.raises(SourceError, match="no readable images"):
    make_source(tiny_config.data)


def test_celeba_partition_file_is_used(tmp_path):
  (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
  splits = split_folder(tmp_path, ["000001.jpg", "000002.jpg", "000003.jpg"], 0.1, 0.1)
  assert splits == {"train": ["000001.jpg"], "validation": ["000002.jpg"], "test": ["000003.jpg"]}


def test_image_modes_are_converted_to_rgb(tmp_path, caplog):
  rng = np.random.default_rng(0)
  rgba = Image.fromarray(rng.integers(0, 255, (20, 20, 4), np.uint8), "RGBA")
  rgba.save(tmp_path / "rgba.png")
  Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
  Image.fromarray(rng.integers(0, 65535, (20, 20), np.uint16)).save(tmp_path / "sixteen.png")
  Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8), "L").save(tmp_path / "gray.png")
  for name in ("rgba.png", "cmyk.jpg", "sixteen.png", "gray.png"):
    rgb = decode_image(str(tmp_path / name))
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8, name
  sixteen = decode_image(str(tmp_path / "sixteen.png"))
  assert sixteen.max() > 200  # scaled, not clipped to 255/65535
  transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
  transparent.save(tmp_path / "clear.png")
  np.testing.assert_array_equal(decode_image(str(tmp_path / "clear.png")), 255)
  with pytest.raises(BadImageError):
    decode_image(b"garbage")
  small = center_square_resize(np.zeros((20, 30, 3), np.uint8), 64, "tiny.png")
  assert small.shape == (64, 64, 3)
  assert any("smaller than 64" in r.message for r in caplog.records)


def test_center_crop_and_antialiased_resize():
  stripes = np.zeros((218, 178, 3), np.uint8)
  stripes[:, ::2] = 255  # 1-px stripes alias to solid black or white without antialiasing
  out = center_square_resize(stripes, 64)
  assert out.shape == (64, 64, 3)
  assert 100 < out.mean() < 155 and out.std() < 40


TFDS_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
from PIL import Image
import tensorflow_datasets as tfds
from tfds_tiny.builder import TinyFaces
root = {root!r}
TinyFaces.IMAGE_DIR = root + "/imgs"
builder = TinyFaces(data_dir=root + "/tfds", file_format="array_record")
builder.download_and_prepare()
from faceinpaint_jax.config import load_config_file
from faceinpaint_jax.data import InputPipeline
config = load_config_file({config!r})
config.data.source = "tfds:tiny_faces"
config.data.data_dir = root + "/tfds"
p = InputPipeline(config, process_index=0, process_count=1)
b = p.batch(0)
assert b["image"].shape == (4, 32, 32, 3), b["image"].shape
assert sorted(p.source.splits) == ["test", "train"], p.source.splits
assert len(p.source.splits["train"]) == 6
# tfds orders records by a hash of their keys: compare as sets of exact pixel arrays.
expected = sorted(np.asarray(Image.open(root + f"/imgs/{{i}}.png")).tobytes() for i in range(6))
train = p.source.splits["train"]
assert sorted(train.load(i).tobytes() for i in range(6)) == expected
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
print("OK")
"""


@pytest.mark.slow
def test_tfds_array_record_source_without_tensorflow(tmp_path):
  (tmp_path / "imgs").mkdir()
  rng = np.random.default_rng(0)
  for i in range(8):
    Image.fromarray(rng.integers(0, 255, (40, 36, 3), np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
  script = TFDS_SCRIPT.format(tests=os.path.join(REPO, "tests"), root=str(tmp_path),
                              config=os.path.join(REPO, "configs", "tiny.py"))
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path, tiny_config):
  tiny_config.data.source = "tfds:celeb_a"
  tiny_config.data.data_dir = str(tmp_path)
  with pytest.raises(SourceError, match="tfds build celeb_a --file_format=array_record"):
    make_source(tiny_config.data)
