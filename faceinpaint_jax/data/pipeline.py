"""Deterministic, resumable, parallel input.

The batch of step s is a pure function of (seed, s, process index): the example at position j of the
global batch is `permutation(seed, epoch)[(s·B + j) mod N]`, and its hole, flip and fill come from a
generator seeded with (seed, s, j). Restarting at step s therefore needs no replay, and the processes of a
multi-host run each decode only their own contiguous slice of the global batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from typing import Iterator

import numpy as np

from faceinpaint_jax.config import ConfigError
from faceinpaint_jax.data import masks as masks_lib
from faceinpaint_jax.data.preprocess import BadImageError, center_square_resize, to_model_range
from faceinpaint_jax.data.sources import Source, make_source
from faceinpaint_jax.models.local_window import local_window_offsets

log = logging.getLogger(__name__)

MAX_REPLACEMENTS = 64  # consecutive unreadable files tolerated before an example gives up


class InputPipeline:
  """Batches for training (shuffled, random holes) or evaluation (in order, protocol holes).

  A batch is a dict of numpy arrays holding this process's slice of the global batch:
    image (b, H, W, 3) float32 ground truth in [−1, 1]; damaged (b, H, W, 3) the network input;
    hole_mask (b, H, W, 1) 1 in the hole; window_offset (b, 2) int32 (y, x) of the local window;
    index (b,) int32 position of the example in its split.
  """

  def __init__(self, config, split: str = "train", training: bool = True, protocol: str = "center",
               process_index: int | None = None, process_count: int | None = None,
               source: Source | None = None):
    if process_index is None or process_count is None:
      import jax
      process_index, process_count = jax.process_index(), jax.process_count()
    self.data_config = config.data
    self.seed = int(config.train.seed)
    self.global_batch = int(config.train.batch_size)
    if self.global_batch % process_count:
      raise ConfigError(f"train.batch_size={self.global_batch} is not divisible by {process_count} processes")
    self.local_batch = self.global_batch // process_count
    self.first = process_index * self.local_batch
    self.training = training
    self.protocol = protocol
    self.image_size = int(config.data.image_size)
    self.window = int(round(self.image_size * config.data.local_window_fraction))
    self.source = source or make_source(config.data)
    self.split = self.source.split(split)
    self.unreadable: list[tuple[str, str]] = []
    self._lock = threading.Lock()
    self._permutations: dict[int, np.ndarray] = {}
    self._pool = concurrent.futures.ThreadPoolExecutor(config.data.num_workers,
                                                       thread_name_prefix="faceinpaint-data")

  def __len__(self) -> int:
    return len(self.split)

  def close(self):
    self._pool.shutdown(wait=False, cancel_futures=True)

  # -- indexing ---------------------------------------------------------------------------------
  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._permutations:
        if len(self._permutations) > 2:
          self._permutations.pop(min(self._permutations))
        rng = np.random.default_rng([self.seed, 0x5EED, epoch])
        self._permutations[epoch] = rng.permutation(len(self.split))
      return self._permutations[epoch]

  def example_index(self, step: int, position: int) -> int:
    flat = step * self.global_batch + position
    if not self.training:
      return flat % len(self.split)
    epoch, offset = divmod(flat, len(self.split))
    return int(self._permutation(epoch)[offset])

  # -- one example --------------------------------------------------------------------------------
  def _load(self, index: int) -> tuple[int, np.ndarray]:
    """Decode `index`, or — if that file turns out unreadable — the next readable one (deterministic)."""
    n = len(self.split)
    for attempt in range(MAX_REPLACEMENTS):
      i = (index + attempt) % n
      try:
        rgb = self.split.load(i)
      except BadImageError as e:
        with self._lock:
          if all(key != self.split.key(i) for key, _ in self.unreadable):
            self.unreadable.append((self.split.key(i), str(e)))
            log.warning("skipping %s: %s", self.split.key(i), e)
        continue
      return i, center_square_resize(rgb, self.image_size, self.split.key(i))
    raise RuntimeError(f"{MAX_REPLACEMENTS} unreadable images in a row around {self.split.key(index)}")

  def example(self, step: int, position: int) -> dict[str, np.ndarray]:
    if not self.training:
      return self.evaluation_example(self.example_index(step, position))
    index, rgb = self._load(self.example_index(step, position))
    rng = np.random.default_rng([self.seed, step, position])
    if self.data_config.random_flip and rng.random() < 0.5:
      rgb = rgb[:, ::-1]
    return self._damaged(index, rgb, masks_lib.training_mask(rng, self.image_size, self.data_config), rng)

  def evaluation_example(self, index: int, hole_side: int | None = None,
                         fill: str | None = None) -> dict[str, np.ndarray]:
    """Image `index` of the split with its protocol hole — seeded by (seed, index), so every method and
    every run sees the same one — or, with `hole_side` (px at 128×128), a centred square of that side.
    `fill` overrides data.hole_fill (blind evaluation runs each kind)."""
    index, rgb = self._load(index)
    if hole_side is not None:
      hole_mask = masks_lib.centered_square(self.image_size, masks_lib.scaled(hole_side, self.image_size))
    else:
      rng = np.random.default_rng([self.seed, 0xE7A1, index])
      hole_mask = masks_lib.protocol_mask(self.protocol, rng, self.image_size, index)
    return self._damaged(index, rgb, hole_mask, np.random.default_rng([self.seed, 0xF111, index]), fill)

  def evaluation_batch(self, indices, hole_side: int | None = None,
                       fill: str | None = None) -> dict[str, np.ndarray]:
    return self._collate([f.result() for f in [
        self._pool.submit(self.evaluation_example, int(i), hole_side, fill) for i in indices]])

  def _damaged(self, index: int, rgb: np.ndarray, hole_mask: np.ndarray, rng: np.random.Generator,
               fill: str | None = None) -> dict[str, np.ndarray]:
    image = to_model_range(rgb)
    # White and mean fills draw nothing from `rng`, so runs with them keep their exact batches.
    fill = masks_lib.choose_fill(fill or self.data_config.hole_fill, rng,
                                 self.data_config.get("hole_fill_weights", ()))
    donor = None
    if fill == "patch":  # another image of the split, drawn from this example's generator ...
      other = (index + 1 + int(rng.integers(max(len(self.split) - 1, 1)))) % len(self.split)
      # ... shifted by a quarter to a half of its size: pasted-over content (hair on a cheek, a piece of
      # background), not another face's same part, which would be a face swap rather than damage.
      shift = rng.integers(self.image_size // 4, self.image_size // 2 + 1, size=2) * rng.choice([-1, 1], size=2)
      donor = np.roll(to_model_range(self._load(other)[1]), tuple(int(v) for v in shift), axis=(0, 1))
    return {
        "image": image,
        "damaged": masks_lib.damage(image, hole_mask, fill, rng, donor),
        "hole_mask": hole_mask,
        "window_offset": local_window_offsets(hole_mask[None], self.window, xp=np)[0],
        "index": np.int32(index),
    }

  # -- batches ------------------------------------------------------------------------------------
  def _submit(self, step: int):
    return [self._pool.submit(self.example, step, self.first + j) for j in range(self.local_batch)]

  @staticmethod
  def _collate(examples) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}

  def batch(self, step: int) -> dict[str, np.ndarray]:
    return self._collate([f.result() for f in self._submit(step)])

  def iterate(self, start_step: int = 0, end_step: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (step, batch) from start_step, decoding `prefetch_batches` batches ahead in the pool."""
    pending = collections.deque()
    next_submit = start_step
    depth = max(1, int(self.data_config.prefetch_batches))
    try:
      while True:
        while len(pending) < depth and (end_step is None or next_submit < end_step):
          pending.append((next_submit, self._submit(next_submit)))
          next_submit += 1
        if not pending:
          return
        step, futures = pending.popleft()
        yield step, self._collate([f.result() for f in futures])
    finally:
      for _, futures in pending:
        for f in futures:
          f.cancel()
