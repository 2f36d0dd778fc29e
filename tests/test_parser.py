"""The face parser: safe .pth reading, weight conversion, parity with PyTorch, the CLI, and L_sem."""

import collections
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceinpaint_jax import assets
from faceinpaint_jax.data.preprocess import decode_image
from faceinpaint_jax.parser import BiSeNet, load_parser_variables, parser_input, torch_to_flax
from faceinpaint_jax.parser.bisenet import resize_bilinear_align_corners, resize_nearest
from faceinpaint_jax.safe_pickle import LEGACY_MAGIC, UnsafeCheckpointError, load_state_dict
from faceinpaint_jax.train import losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "parser_reference.npz")


# -- a tiny legacy-format writer, so the reader is tested on files whose bytes we control ---------------
def _rebuild_tensor_v2(*args):
  raise AssertionError("never called: only pickled by reference")


class FloatStorage:
  pass


class _Tensor:
  def __init__(self, key, array):
    self.key, self.array = key, np.ascontiguousarray(array, np.float32)


class _LegacyWriter(pickle.Pickler):
  """Writes tensors the way torch's legacy format does: rebuild_tensor_v2 over persistent storages."""

  def persistent_id(self, obj):
    if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__storage__":
      t = obj[1]
      return ("storage", FloatStorage, t.key, "cpu", t.array.size, None)
    return None

  def reducer_override(self, obj):
    if isinstance(obj, _Tensor):
      stride = tuple(s // 4 for s in obj.array.strides)
      return (_rebuild_tensor_v2, (("__storage__", obj), 0, obj.array.shape, stride, False,
                                   collections.OrderedDict()))
    return NotImplemented


@pytest.fixture
def fake_torch_globals(monkeypatch):
  """Stand-ins registered as torch._utils._rebuild_tensor_v2 and torch.FloatStorage, for pickling only."""
  torch_mod, utils_mod = type(sys)("torch"), type(sys)("torch._utils")
  _rebuild_tensor_v2.__module__, FloatStorage.__module__ = "torch._utils", "torch"
  utils_mod._rebuild_tensor_v2, torch_mod.FloatStorage = _rebuild_tensor_v2, FloatStorage
  monkeypatch.setitem(sys.modules, "torch", torch_mod)
  monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)


def _write_legacy(path, tensors: dict, payload: bytes | None = None):
  items = [_Tensor(str(i), a) for i, a in enumerate(tensors.values())]
  with open(path, "wb") as f:
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
      pickle.dump(header, f, protocol=2)
    if payload is None:
      _LegacyWriter(f, protocol=2).dump(collections.OrderedDict(zip(tensors, items)))
    else:
      f.write(payload)
    pickle.dump([t.key for t in items], f, protocol=2)
    for t in items:
      f.write(struct.pack("<q", t.array.size))
      f.write(t.array.tobytes())


def test_reader_matches_the_arrays_written(tmp_path, fake_torch_globals):
  tensors = {"a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
             "a.bias": np.array([1.5, -2.0], np.float32)}
  _write_legacy(tmp_path / "tiny.pth", tensors)
  loaded = load_state_dict(tmp_path / "tiny.pth")
  assert list(loaded) == ["a.weight", "a.bias"]
  for k in tensors:
    np.testing.assert_array_equal(loaded[k], tensors[k])
  flax_vars = torch_to_flax({"conv.weight": tensors["a.weight"], "bn.running_mean": tensors["a.bias"]})
  np.testing.assert_array_equal(flax_vars["params"]["conv"]["kernel"], tensors["a.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(flax_vars["batch_stats"]["bn"]["mean"], tensors["a.bias"])


def _malicious_payload(marker):
  # GLOBAL os.system, then call it with a shell command that would create `marker`.
  return (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(f"touch {marker}"))
          + f"touch {marker}".encode() + b"\x85q\x01Rq\x02.")


def test_crafted_legacy_pth_calling_os_system_is_rejected(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  _write_legacy(path, {}, payload=_malicious_payload(marker))
  with pytest.raises(UnsafeCheckpointError, match="os.system"):
    load_state_dict(path)
  assert not marker.exists()


def test_crafted_zip_pth_calling_os_system_is_rejected(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil_zip.pth"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", _malicious_payload(marker))
  with pytest.raises(UnsafeCheckpointError, match="os.system"):
    load_state_dict(path)
  assert not marker.exists()


def test_resize_helpers_match_pytorch_conventions():
  x = jnp.arange(4.0).reshape(1, 2, 2, 1)
  up = resize_bilinear_align_corners(x, 3, 3)[0, :, :, 0]
  np.testing.assert_allclose(up, [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]], atol=1e-6)  # corners kept
  np.testing.assert_array_equal(resize_nearest(x, 4, 4)[0, :, :, 0],
                                [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_cache_writers_racing_for_one_file_both_succeed_and_leave_it_whole(tmp_path):
  """Two workers converting the parser's weights on a cold cache at once: each must finish, the file
  must be a complete one, and no temporary file may be left (a shared temporary name made the second
  rename fail with FileNotFoundError)."""
  import threading
  target = tmp_path / "cache" / "bisenet_cafe.npz"
  both_written = threading.Barrier(2)
  errors = []

  def save(value):
    def write(tmp):
      np.savez(tmp, x=np.full(1000, value))
      both_written.wait(timeout=10)  # both temporaries exist before either is renamed
    try:
      assets.write_atomically(target, write)
    except Exception as e:  # noqa: BLE001 — the test reports it
      errors.append(e)

  workers = [threading.Thread(target=save, args=(v,)) for v in (1.0, 2.0)]
  for w in workers:
    w.start()
  for w in workers:
    w.join()
  assert errors == []
  with np.load(target) as saved:
    assert saved["x"].shape == (1000,) and len(set(saved["x"].tolist())) == 1
  assert [f.name for f in target.parent.iterdir()] == [target.name]

  def failing(tmp):
    pathlib.Path(tmp).write_bytes(b"half a file")
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    assets.write_atomically(target, failing)
  with np.load(target) as saved:  # the old file is untouched, the half-written one is gone
    assert saved["x"].shape == (1000,)
  assert [f.name for f in target.parent.iterdir()] == [target.name]


@pytest.fixture(scope="module")
def parser_variables():
  return load_parser_variables()


def test_converted_weights_fill_every_variable(parser_variables):
  expected = jax.eval_shape(lambda: BiSeNet().init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), return_aux=True))
  chex.assert_trees_all_equal_shapes(expected, parser_variables)
  count = sum(x.size for x in jax.tree_util.tree_leaves(parser_variables["params"]))
  assert count == 13_300_416


@pytest.mark.slow
def test_parity_with_pytorch_original(parser_variables):
  """Logits of five sample faces at 512×512 against the fixture computed by PyTorch 2.13."""
  ref = np.load(FIXTURE)
  apply = jax.jit(lambda v, x: BiSeNet().apply(v, x))
  faces = assets.sample_faces_dir()
  stride = int(ref["stride"])
  worst, agreement = 0.0, []
  for name, labels, logits in zip(ref["faces"], ref["labels"], ref["logits"]):
    out = np.asarray(apply(parser_variables, parser_input(decode_image(str(faces / str(name))), 512)[None]))[0]
    worst = max(worst, float(np.abs(out[::stride, ::stride] - logits).max()))
    agreement.append(float((out.argmax(-1) == labels).mean()))
  print(f"max |logit difference| {worst:.2e}, argmax agreement ≥ {min(agreement):.5f}")
  assert worst < 1e-3
  assert min(agreement) >= 0.999


@pytest.mark.slow
def test_parse_cli_writes_labels(tmp_path):
  face = str(assets.sample_faces_dir() / "000901.jpg")
  result = subprocess.run([sys.executable, "-m", "faceinpaint_jax.parse", "--input", face, "--output",
                           str(tmp_path / "p.png"), "--save-labels", str(tmp_path / "l.npy")],
                          capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr[-2000:]
  labels = np.load(tmp_path / "l.npy")
  assert labels.shape == (512, 512) and labels.dtype == np.uint8
  present = set(np.unique(labels).tolist())
  # skin, brows, eyes, nose, lips, hair
  assert {1, 10, 12, 13, 17} <= present and present & {2, 3} and present & {4, 5}
  bad = subprocess.run([sys.executable, "-m", "faceinpaint_jax.parse", "--input", str(tmp_path / "l.npy"),
                        "--output", str(tmp_path / "x.png")], capture_output=True, text=True, cwd=REPO)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
  assert not (tmp_path / "x.png").exists()


def test_semantic_loss_eq9_and_its_gradient(parser_variables):
  faces = assets.sample_faces_dir()
  from faceinpaint_jax.data.preprocess import center_square_resize, to_model_range
  images = jnp.stack([to_model_range(center_square_resize(decode_image(str(faces / n)), 64))
                      for n in ("000900.jpg", "000901.jpg")])
  apply = lambda x: BiSeNet().apply(parser_variables, x)
  loss = jax.jit(lambda gt, rec: losses.semantic_loss(apply, gt, rec, 128))
  same = float(loss(images, images))
  # For I_rec = I_gt the labels are parse(I_gt)'s own argmax: the loss is mean(−max log-softmax).
  prepared = BiSeNet().apply(parser_variables, __import__("faceinpaint_jax.parser", fromlist=["normalize"])
                             .normalize(jax.image.resize((images + 1) / 2, (2, 128, 128, 3), "bilinear")))
  expected = float(jnp.mean(-jnp.max(jax.nn.log_softmax(prepared, -1), -1)))
  np.testing.assert_allclose(same, expected, rtol=1e-5)
  damaged = images.at[:, 20:44, 16:48].set(1.0)
  assert float(loss(images, damaged)) > same + 0.1
  # Gradients flow to the reconstruction, never to the parser weights.
  g = jax.grad(lambda rec: loss(images, rec))(damaged)
  assert jnp.all(jnp.isfinite(g)) and jnp.any(g != 0)


def _write_celebamask_hq(root, parser_variables, faces):
  """A tiny CelebAMask-HQ tree whose per-part masks are the pretrained parser's own labels."""
  from faceinpaint_jax.parser.bisenet import CLASS_NAMES
  from PIL import Image
  (root / "CelebA-HQ-img").mkdir(parents=True)
  apply = jax.jit(lambda v, x: BiSeNet().apply(v, x).argmax(-1))
  for i, name in enumerate(faces):
    rgb = decode_image(str(assets.sample_faces_dir() / name))[20:198]  # square, as CelebA-HQ's
    Image.fromarray(rgb).save(root / "CelebA-HQ-img" / f"{i}.png")
    labels = np.asarray(apply(parser_variables, parser_input(rgb, 128)[None]))[0]
    group = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
    group.mkdir(parents=True, exist_ok=True)
    for class_id in np.unique(labels):
      if class_id:
        Image.fromarray(((labels == class_id) * 255).astype(np.uint8)).save(
            group / f"{i:05d}_{CLASS_NAMES[class_id]}.png")


@pytest.mark.slow
def test_parser_training_on_a_tiny_celebamask_hq_tree(parser_variables, tmp_path):
  root = tmp_path / "CelebAMask-HQ"
  _write_celebamask_hq(root, parser_variables, ["000900.jpg", "000901.jpg", "000902.jpg", "000903.jpg"])
  workdir = tmp_path / "run"
  result = subprocess.run([sys.executable, "launch.py", "--config", "configs/parser.py", "--workdir", str(workdir),
                           f"--config.data.root={root}", "--config.data.image_size=128",
                           "--config.data.test_fraction=0.3", "--config.train.steps=3",
                           "--config.train.batch_size=2", "--config.train.eval_every=3",
                           "--config.train.log_every=1"], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [__import__("json").loads(l) for l in open(workdir / "metrics.jsonl")]
  assert lines[0]["step"] == 0 and lines[-1]["step"] == 3
  # The labels are the pretrained parser's own predictions at this size: before training, mIoU is exact.
  assert lines[0]["miou"] == pytest.approx(1.0)
  assert 0.0 < lines[-1]["miou"] <= 1.0 and all(np.isfinite(l["loss"]) for l in lines[1:])
  reloaded = load_parser_variables(str(workdir / "parser.npz"))
  chex.assert_trees_all_equal_shapes(reloaded, parser_variables)


@pytest.mark.slow
def test_crafted_pth_given_to_the_clis_is_refused_in_one_line(tmp_path):
  """`parse --weights` and `--config.loss.parser_weights`: nothing runs, one line, exit 2."""
  marker = tmp_path / "pwned"
  evil = tmp_path / "evil.pth"
  _write_legacy(evil, {}, payload=_malicious_payload(marker))
  face = str(assets.sample_faces_dir() / "000901.jpg")
  commands = [
      [sys.executable, "-m", "faceinpaint_jax.parse", "--input", face, "--output", str(tmp_path / "p.png"),
       "--weights", str(evil)],
      [sys.executable, "launch.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"),
       "--config.loss.semantic=1.0", f"--config.loss.parser_weights={evil}"],
  ]
  for command in commands:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: refusing the face parser weights {evil}") and "os.system" in result.stderr
  assert not marker.exists() and not (tmp_path / "p.png").exists()
