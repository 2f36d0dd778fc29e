"""What verifying checkpoints costs: digests, save and restore of a whole TrainState, with and without them.

  python benchmarks/checkpoint_integrity.py --config configs/celeba128.py [--repeats 3]

Prints one JSON line: the state's size, the median ms to digest it, to save it (digests included, waiting
for the asynchronous write) and to restore it verified, and orbax's own save and restore of the same
state without digests, for comparison.
"""

import argparse
import json
import statistics
import tempfile
import time

import common
import jax
import orbax.checkpoint as ocp

from faceinpaint_jax.checkpoint import Checkpointer, abstract_like, array_digests
from faceinpaint_jax.config import load_config_file
from faceinpaint_jax.train.state import initial_train_state


def _median_ms(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return round(1000 * statistics.median(times), 1)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/celeba128.py")
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  config = load_config_file(args.config)
  state = initial_train_state(config, jax.random.key(0))
  jax.block_until_ready(state)
  leaves = jax.tree_util.tree_leaves(state)
  megabytes = sum(getattr(x, "nbytes", 0) for x in leaves if hasattr(x, "nbytes")) / 2**20
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = abstract_like(state, sharding)

  with tempfile.TemporaryDirectory() as workdir:
    checkpointer = Checkpointer(workdir, keep=2)
    step = iter(range(1, 10_000))

    def save_verified():
      checkpointer.save(next(step), state, {"step": 0}, force=True)
      checkpointer.wait()

    def save_plain():
      checkpointer.manager.save(next(step), args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({"step": 0})), force=True)
      checkpointer.wait()

    save_verified_ms = _median_ms(save_verified, args.repeats)
    save_plain_ms = _median_ms(save_plain, args.repeats)
    save_verified()
    latest = checkpointer.latest_step()
    restore_verified_ms = _median_ms(lambda: checkpointer.restore(latest, abstract), args.repeats)
    restore_plain_ms = _median_ms(lambda: checkpointer.manager.restore(latest, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())), args.repeats)
    checkpointer.close()

  report = {"benchmark": "checkpoint_integrity", "config": args.config, "machine": common.machine(),
            "arrays": len(leaves), "state_mib": round(megabytes, 1),
            "digest_ms": _median_ms(lambda: array_digests(state), args.repeats),
            "save_with_digests_ms": save_verified_ms, "save_without_ms": save_plain_ms,
            "restore_verified_ms": restore_verified_ms, "restore_without_ms": restore_plain_ms}
  print(json.dumps(report))


if __name__ == "__main__":
  main()
