"""Checkpoints with orbax: the whole TrainState plus a small JSON of metadata, saved atomically and verified.

orbax writes each step into a temporary directory and renames it when complete, so a crash or
`kill -9` during a save leaves the previous checkpoint as the latest usable one. orbax and TensorStore
do not checksum what they read back, so every save also stores a SHA-256 of each array (dtype, shape
and bytes) in the step's metadata, and every restore recomputes and compares them: a flipped byte on
disk is refused instead of trained on, evaluated or used to inpaint.

  python -m faceinpaint_jax.checkpoint verify WORKDIR   # checks every kept step; exit 1 if one fails
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

# Where training moves a step that fails verification: out of orbax's sight (so the step can be
# written again), but kept for the user to inspect rather than deleted.
QUARANTINE = "checkpoints_corrupt"


class CheckpointCorrupt(Exception):
  """A kept step that cannot be read back, or reads back different from what was saved."""


def _path_name(path) -> str:
  """'g_params/completion/rgb_full/Conv_0/kernel' for a TrainState field and for the same entry of the
  nested dicts a target-free restore returns, so digests of either can be compared."""
  parts = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        parts.append(str(getattr(entry, attribute)))
        break
  return "/".join(parts)


def _host_array(leaf) -> np.ndarray:
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    leaf = jax.random.key_data(leaf)
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    leaf = leaf.addressable_data(0)  # replicated: this host's copy is the whole array
  return np.asarray(leaf)


def array_digests(state) -> dict[str, str]:
  """Path → SHA-256 of (dtype, shape, bytes) for every array of `state`."""
  digests = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    array = np.ascontiguousarray(_host_array(leaf))
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    digests[_path_name(path)] = digest.hexdigest()
  return digests


def verify_digests(state, meta: dict, step: int) -> None:
  """Raise CheckpointCorrupt unless `state` hashes to the digests saved with it."""
  saved = meta.get("digests")
  if saved is None:
    raise CheckpointCorrupt(f"step {step} has no array digests (saved before checkpoints were verified)")
  restored = array_digests(state)
  if restored.keys() != saved.keys():
    missing = sorted(saved.keys() - restored.keys()) or sorted(restored.keys() - saved.keys())
    raise CheckpointCorrupt(f"step {step}: its arrays do not match what was saved ({missing[0]} …)")
  differing = [name for name in saved if saved[name] != restored[name]]
  if differing:
    more = f" and {len(differing) - 1} more" if len(differing) > 1 else ""
    raise CheckpointCorrupt(f"step {step}: {differing[0]}{more} differ from what was saved")


class Checkpointer:
  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
    meta = dict(meta, digests=array_digests(state))
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, step: int, abstract_state):
    """(state, meta) of `step`, verified against its digests; CheckpointCorrupt if it fails."""
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # a damaged file can also fail to decode at all
      raise CheckpointCorrupt(f"step {step} cannot be read ({type(e).__name__}: {_first_line(e)})") from None
    verify_digests(restored["state"], restored["meta"], step)
    return restored["state"], restored["meta"]

  def restore_latest_intact(self, abstract_state, report=print):
    """(step, state, meta) of the newest step that verifies, moving each failing one aside (one line each
    through `report`); (None, None, None) when no step is kept. CheckpointCorrupt if none verifies."""
    failed = []
    for step in reversed(self.all_steps()):
      try:
        state, meta = self.restore(step, abstract_state)
        return step, state, meta
      except CheckpointCorrupt as e:
        failed.append(step)
        moved = self.quarantine(step)
        report(f"warning: checkpoint {e}; moved to {moved}, trying the previous one")
    if failed:
      raise CheckpointCorrupt(f"no kept checkpoint verifies (steps {', '.join(map(str, failed))} moved to "
                              f"{os.path.join(os.path.dirname(self.directory), QUARANTINE)})")
    return None, None, None

  def quarantine(self, step: int) -> str:
    """Move a failing step out of the checkpoint directory (kept for inspection); its path."""
    if jax.process_index() == 0:
      target_dir = os.path.join(os.path.dirname(self.directory), QUARANTINE)
      os.makedirs(target_dir, exist_ok=True)
      target = os.path.join(target_dir, str(step))
      if os.path.exists(target):
        shutil.rmtree(target)
      shutil.move(os.path.join(self.directory, str(step)), target)
    self.manager.reload()
    return os.path.join(os.path.dirname(self.directory), QUARANTINE, str(step))

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state, sharding):
  """ShapeDtypeStructs with the target sharding, for restoring straight onto the mesh."""
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def load_raw(workdir: str, step: int | None = None, verify: bool = True):
  """(state as a nested dict of arrays, meta) without rebuilding the model, verified against the saved
  digests (CheckpointCorrupt if it fails): for evaluation, inpainting, inspection and tests."""
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                  item_names=("state", "meta"))
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  if step not in manager.all_steps():
    kept = ", ".join(map(str, manager.all_steps())) or "none"
    manager.close()
    raise FileNotFoundError(f"no checkpoint for step {step} in {workdir} (kept: {kept})")
  # Onto this process's first device whatever mesh saved it, so any machine can read any checkpoint.
  single = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(fallback_sharding=single), meta=ocp.args.JsonRestore()))
  except Exception as e:
    raise CheckpointCorrupt(f"step {step} cannot be read ({type(e).__name__}: {_first_line(e)})") from None
  finally:
    manager.close()
  if verify:
    verify_digests(restored["state"], restored["meta"], step)
  return restored["state"], restored["meta"]


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else ""


def load_run_config(workdir: str):
  """The config a run was trained with (WORKDIR/config.json) as a ConfigDict."""
  import json

  import ml_collections

  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no trained run in {workdir} (config.json missing)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_generator(workdir: str, step: int | None = None):
  """(config, generator variables {"params", "batch_stats"}, step) of the latest (or given) checkpoint.

  The parameters are the weight average (`g_ema_params`) where the checkpoint has one.
  """
  config = load_run_config(workdir)
  try:
    state, meta = load_raw(workdir, step)
  except CheckpointCorrupt as e:
    refused = step if step is not None else _latest(workdir)
    intact = next((s for s in reversed(kept_steps(workdir)) if s != refused and _verifies(workdir, s)), None)
    alternative = (f"--step {intact} is the newest intact one" if intact is not None
                   else "no other kept step verifies")
    raise CheckpointCorrupt(f"checkpoint {e} (in {workdir}): refused; {alternative}") from None
  params = state.get("g_ema_params", state["g_params"])
  return config, {"params": params, "batch_stats": state["g_batch_stats"]}, int(meta["step"])


def kept_steps(workdir: str) -> list[int]:
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                  item_names=("state", "meta"))
  steps = sorted(manager.all_steps())
  manager.close()
  return steps


def _latest(workdir: str) -> int | None:
  steps = kept_steps(workdir)
  return steps[-1] if steps else None


def _verifies(workdir: str, step: int) -> bool:
  try:
    load_raw(workdir, step)
    return True
  except CheckpointCorrupt:
    return False


def verify_workdir(workdir: str) -> int:
  """Check every kept step of WORKDIR; one line per step; 0 if all verify, 1 otherwise."""
  steps = kept_steps(workdir)
  if not steps:
    print(f"error: no checkpoint in {os.path.join(workdir, 'checkpoints')}", file=sys.stderr)
    return 2
  bad = 0
  for step in steps:
    try:
      state, _ = load_raw(workdir, step)
      print(f"step {step}: ok ({len(jax.tree_util.tree_leaves(state))} arrays verified)")
    except CheckpointCorrupt as e:
      bad += 1
      print(f"step {step}: FAILED — {e}")
  return 1 if bad else 0


def compare_workdirs(first: str, second: str, step: int | None = None) -> int:
  """Whether two runs hold the same train state, array for array and bit for bit (a rerun of a config,
  a resumed run against a straight one): 0 if every array of the step is equal, 1 if any differs or the
  runs' latest steps differ, one line either way. Both steps are verified against their own digests
  first, so equal digests mean equal arrays."""
  if step is None:
    latest = []
    for workdir in (first, second):
      latest.append(_latest(workdir))
      if latest[-1] is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    if latest[0] != latest[1]:
      print(f"latest steps differ: {first} is at step {latest[0]}, {second} at step {latest[1]} "
            f"(--step S compares one step of both)")
      return 1
    step = latest[0]
  digests = []
  for workdir in (first, second):
    try:
      digests.append(load_raw(workdir, step)[1]["digests"])
    except CheckpointCorrupt as e:
      raise CheckpointCorrupt(f"checkpoint {e} (in {workdir})") from None
  names = sorted(digests[0].keys() | digests[1].keys())
  differing = [name for name in names if digests[0].get(name) != digests[1].get(name)]
  if not differing:
    print(f"step {step}: all {len(names)} arrays bit-for-bit equal")
    return 0
  shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
  print(f"step {step}: {len(differing)} of {len(names)} arrays differ: {shown}")
  return 1


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(prog="python -m faceinpaint_jax.checkpoint",
                                   description="Check a run's kept checkpoints against their digests, or "
                                               "compare two runs bit for bit.")
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("verify", help="verify every kept step of WORKDIR").add_argument("workdir")
  compare = commands.add_parser("compare", help="0 if two runs' latest (or --step) states are bit-for-bit "
                                                "equal, 1 if not")
  compare.add_argument("workdir", nargs=2)
  compare.add_argument("--step", type=int, default=None)
  args = parser.parse_args(argv)
  workdirs = args.workdir if args.command == "compare" else [args.workdir]
  missing = next((workdir for workdir in workdirs if not os.path.isdir(workdir)), None)
  if missing is not None:
    print(f"error: no such workdir: {missing}", file=sys.stderr)
    return 2
  if args.command == "verify":
    return verify_workdir(args.workdir)
  try:
    return compare_workdirs(*args.workdir, step=args.step)
  except (FileNotFoundError, CheckpointCorrupt) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
