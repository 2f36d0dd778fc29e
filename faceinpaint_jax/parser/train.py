"""Train or fine-tune the face parser on (image, label) pairs, with an mIoU evaluation.

  python launch.py --config configs/parser.py --workdir runs/parser --config.data.root=PATH

PATH holds either the CelebAMask-HQ layout — `CelebA-HQ-img/<i>.jpg` and
`CelebAMask-HQ-mask-anno/<group>/<iiiii>_<part>.png` per-part masks, merged into the 19 classes of
CLASS_NAMES in face-parsing.PyTorch's order (later parts overwrite earlier ones) — or plain pairs,
`images/<name>.<ext>` with `labels/<name>.png` holding class ids. Images are split by a hash of their
name (`data.test_fraction`). Training starts from the pretrained weights unless `model.from_scratch`;
the loss is cross-entropy on the main and both auxiliary heads. The final weights are written as
`WORKDIR/parser.npz`, usable as `--config.loss.parser_weights` for L_sem.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from PIL import Image

from faceinpaint_jax.config import ConfigError
from faceinpaint_jax.data.preprocess import decode_image
from faceinpaint_jax.data.sources import IMAGE_EXTENSIONS, SourceError, _hash_fraction
from faceinpaint_jax.parser.bisenet import CLASS_NAMES, NUM_CLASSES, BiSeNet
from faceinpaint_jax.parser.weights import parser_input

log = logging.getLogger(__name__)

ANNOTATION_PARTS = CLASS_NAMES[1:]  # part files are named by class, background is implicit


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "parser"
  config.data = ml_collections.ConfigDict(dict(root="", image_size=512, test_fraction=0.1, cache_dir=""))
  config.model = ml_collections.ConfigDict(dict(from_scratch=False, weights=""))
  config.train = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=8, learning_rate=1e-4, seed=0, log_every=20, eval_every=200,
      checkpoint_every=200, keep_checkpoints=2, aux_weight=1.0))
  return config


def validate(config) -> None:
  if not config.data.root:
    raise ConfigError("data.root is required: a folder of (image, label) pairs")
  if config.data.image_size % 32:
    raise ConfigError(f"data.image_size={config.data.image_size} must be a multiple of 32")
  for key in ("steps", "batch_size", "learning_rate", "log_every", "eval_every", "checkpoint_every"):
    if not config.train[key] > 0:
      raise ConfigError(f"train.{key} must be > 0")


def find_pairs(root: str) -> list[tuple[pathlib.Path, list]]:
  """[(image path, label spec)], label spec being a label PNG path or a list of (class id, part mask path)."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise SourceError(f"parser data folder not found: {root}")
  pairs = []
  if (root / "CelebA-HQ-img").is_dir():
    parts = {}
    for p in (root / "CelebAMask-HQ-mask-anno").rglob("*.png"):
      index, _, part = p.stem.partition("_")
      if part in ANNOTATION_PARTS:
        parts.setdefault(int(index), []).append((CLASS_NAMES.index(part), p))
    for image in sorted((root / "CelebA-HQ-img").iterdir()):
      if image.suffix.lower() in IMAGE_EXTENSIONS and image.stem.isdigit() and int(image.stem) in parts:
        pairs.append((image, sorted(parts[int(image.stem)])))
  elif (root / "images").is_dir() and (root / "labels").is_dir():
    for image in sorted((root / "images").iterdir()):
      label = root / "labels" / (image.stem + ".png")
      if image.suffix.lower() in IMAGE_EXTENSIONS and label.exists():
        pairs.append((image, label))
  if not pairs:
    raise SourceError(f"no (image, label) pairs under {root}: expected CelebA-HQ-img/ + "
                      f"CelebAMask-HQ-mask-anno/, or images/ + labels/")
  return pairs


def load_pair(image_path, label_spec, size: int):
  image = parser_input(decode_image(str(image_path)), size)  # centre square, as labels are square
  if isinstance(label_spec, list):
    labels = np.zeros((size, size), np.uint8)
    for class_id, part in label_spec:  # CLASS_NAMES order: later parts overwrite earlier ones
      with Image.open(part) as m:
        labels[np.asarray(m.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127] = class_id
  else:
    with Image.open(label_spec) as m:
      labels = np.asarray(m.convert("L").resize((size, size), Image.Resampling.NEAREST)).astype(np.uint8)
    if labels.max() >= NUM_CLASSES:
      raise SourceError(f"{label_spec} has class id {labels.max()} ≥ {NUM_CLASSES}")
  return image, labels


def mean_iou(confusion: np.ndarray) -> float:
  """mIoU over the classes that occur in the ground truth or the prediction."""
  inter = np.diag(confusion).astype(np.float64)
  union = confusion.sum(0) + confusion.sum(1) - inter
  present = union > 0
  return float(np.mean(inter[present] / union[present])) if present.any() else 0.0


def train_parser(config, workdir: str) -> int:
  """Fine-tune the parser; like the inpainting trainer it holds WORKDIR's lock and resumes from the
  newest checkpoint that verifies."""
  from faceinpaint_jax.train.workdir import WorkdirLock
  validate(config)
  with WorkdirLock(workdir):
    return _train_parser(config, workdir)


def _train_parser(config, workdir: str) -> int:
  from faceinpaint_jax.checkpoint import Checkpointer
  from faceinpaint_jax import assets
  from faceinpaint_jax.parser.weights import load_parser_variables
  from faceinpaint_jax.train.workdir import remove_interrupted_saves

  remove_interrupted_saves(os.path.join(workdir, "checkpoints"))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  pairs = find_pairs(config.data.root)
  test = [p for p in pairs if _hash_fraction(p[0].name) < config.data.test_fraction] or pairs[:1]
  train = [p for p in pairs if p not in test] or pairs
  size, batch_size = config.data.image_size, config.train.batch_size
  model = BiSeNet()
  if config.model.from_scratch:
    variables = model.init(jax.random.key(config.train.seed), jnp.zeros((1, size, size, 3)), return_aux=True)
  else:
    variables = load_parser_variables(config.model.weights, config.data.cache_dir)
  tx = optax.adam(config.train.learning_rate)
  state = {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
           "batch_stats": variables["batch_stats"], "opt_state": tx.init(variables["params"])}
  checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
  start, restored, _ = checkpointer.restore_latest_intact(jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.asarray(x).dtype), state))
  start = start or 0
  if start:
    state = restored

  @jax.jit
  def train_step(state, images, labels):
    def loss_fn(params):
      outs, updates = model.apply({"params": params, "batch_stats": state["batch_stats"]}, images,
                                  train=True, return_aux=True, mutable=["batch_stats"])
      ce = [jnp.mean(optax.softmax_cross_entropy_with_integer_labels(o, labels)) for o in outs]
      return ce[0] + config.train.aux_weight * (ce[1] + ce[2]), updates["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
            "batch_stats": stats, "opt_state": opt_state}, loss

  predict = jax.jit(lambda v, x: model.apply(v, x).argmax(-1))

  def evaluate(state) -> float:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for image_path, spec in test:
      image, labels = load_pair(image_path, spec, size)
      pred = np.asarray(predict({"params": state["params"], "batch_stats": state["batch_stats"]}, image[None]))[0]
      confusion += np.bincount(labels.ravel().astype(np.int64) * NUM_CLASSES + pred.ravel(),
                               minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    return mean_iou(confusion)

  metrics_file = open(os.path.join(workdir, "metrics.jsonl"), "a")
  if start == 0:
    miou = evaluate(state)
    metrics_file.write(json.dumps({"step": 0, "miou": miou}) + "\n")
    print(f"step 0 mIoU {miou:.4f} on {len(test)} held-out pairs", flush=True)
  for step in range(start, config.train.steps):
    # The batch of step s depends only on (seed, s), as in the main pipeline.
    order = np.random.default_rng([config.train.seed, step]).choice(len(train), batch_size)
    loaded = [load_pair(*train[i], size) for i in order]
    images = jnp.asarray(np.stack([x for x, _ in loaded]))
    labels = jnp.asarray(np.stack([y for _, y in loaded]).astype(np.int32))
    state, loss = train_step(state, images, labels)
    done = step + 1
    record = {"step": done, "loss": float(loss)} if done % config.train.log_every == 0 else None
    if done % config.train.eval_every == 0 or done == config.train.steps:
      record = dict(record or {"step": done, "loss": float(loss)}, miou=evaluate(state))
    if record:
      metrics_file.write(json.dumps(record) + "\n")
      metrics_file.flush()
      print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()), flush=True)
    if done % config.train.checkpoint_every == 0 or done == config.train.steps:
      checkpointer.save(done, state, {"step": done}, force=True)
  checkpointer.close()
  metrics_file.close()
  final = {"params": jax.device_get(state["params"]), "batch_stats": jax.device_get(state["batch_stats"])}
  out = pathlib.Path(workdir) / "parser.npz"
  assets.save_tree(out, final)
  print(f"wrote {out}")
  return 0
