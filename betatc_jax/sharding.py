"""Data parallelism: a 1-D 'data' mesh over every device of every process.

Parameters are replicated and batches are sharded along their first axis.
The loss is computed on the *global* batch inside ``jax.jit``: XLA gathers
what the B×B estimator matrix needs, so β-TCVAE's estimator is the same on
1 device or N (a per-device loss, as with ``pmap``, would not be).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None,
                                 heartbeat_timeout_seconds: int = 100) -> bool:
  """Calls ``jax.distributed.initialize`` when asked to, once.

  Asked to means: a coordinator address is given (from the config), or the
  environment sets ``JAX_COORDINATOR_ADDRESS`` (jax reads the rest, as it
  does on Cloud TPU / SLURM). Call before any other jax call. A process that
  is already initialized is left as it is.

  Args:
    heartbeat_timeout_seconds: how long a silent process may go before JAX
      ends every process with an error naming it.

  Returns:
    Whether this call initialized.
  """
  from jax._src import distributed

  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not coordinator_address or distributed.global_state.client is not None:
    return False
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  return True


def initialize_from_config(config) -> bool:
  """``maybe_initialize_distributed`` from a config's ``distributed.*`` keys."""
  given = bool(config.distributed.coordinator_address)
  return maybe_initialize_distributed(
      config.distributed.coordinator_address or None,
      config.distributed.num_processes if given else None,
      config.distributed.process_id if given else None,
      config.distributed.get("heartbeat_timeout_seconds", 100))


def make_mesh() -> Mesh:
  """A 1-D mesh named 'data' over all devices (all processes)."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batch axis split over 'data'."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same full array on every device."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the batch splits evenly over the devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} is not divisible by the number of devices ({n}).")
