"""Checkpoints with orbax: the whole TrainState plus a small JSON of metadata, saved atomically.

orbax writes each step into a temporary directory and renames it when complete, so a crash or
`kill -9` during a save leaves the previous checkpoint as the latest usable one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, step: int, abstract_state):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state, sharding):
  """ShapeDtypeStructs with the target sharding, for restoring straight onto the mesh."""
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def load_raw(workdir: str, step: int | None = None):
  """(state as a nested dict of arrays, meta) without rebuilding the model: for inspection and tests."""
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
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(fallback_sharding=single), meta=ocp.args.JsonRestore()))
  manager.close()
  return restored["state"], restored["meta"]


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
  state, meta = load_raw(workdir, step)
  params = state.get("g_ema_params", state["g_params"])
  return config, {"params": params, "batch_stats": state["g_batch_stats"]}, int(meta["step"])
