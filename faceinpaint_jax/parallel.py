"""Data parallelism over every device of every host: one `data` mesh axis, jit with shardings.

Why jit + NamedSharding rather than pmap: see docs/PARALLELISM.md.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from faceinpaint_jax.config import ConfigError

log = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize_distributed(parallel_config) -> None:
  """Start jax.distributed when the run spans several processes.

  Explicit coordinator/process count/id from the config win; otherwise SLURM and TPU pods are
  auto-detected by JAX. A single process on one host needs nothing.
  """
  if parallel_config.coordinator_address:
    jax.distributed.initialize(coordinator_address=parallel_config.coordinator_address,
                               num_processes=parallel_config.num_processes,
                               process_id=parallel_config.process_id)
  elif "SLURM_NTASKS" in os.environ and int(os.environ["SLURM_NTASKS"]) > 1:
    jax.distributed.initialize()
  elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  if jax.process_count() > 1:
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """This process's slice of the batch → global jax.Arrays sharded along `data`."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def check_batch_size(global_batch_size: int) -> None:
  if global_batch_size % jax.device_count():
    raise ConfigError(f"train.batch_size={global_batch_size} must be divisible by the "
                     f"{jax.device_count()} devices")
