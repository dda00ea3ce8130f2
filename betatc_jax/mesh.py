"""Devices, meshes and processes.

A single run is data-parallel over a 1-D ``'data'`` mesh of every device of
every process: parameters replicated, batches split along their first axis.
The loss is computed on the *global* batch inside ``jax.jit``, so
β-TCVAE's estimator is the same on 1 device or N (a per-device loss, as
with ``pmap``, would not be). A vmapped population spreads its members over
a ``('member', 'data')`` mesh.

Several processes (hosts) run the same program (JAX's multi-controller
runtime, ``jax.distributed``): a mesh over ``jax.devices()`` spans them all,
each process holds only the shards on its own devices, and this module
turns per-process data into global arrays and back. The processes agree on
small decisions (stop, deadline) so that none waits in a collective the
others skipped. A lost process: a collective whose peer died fails at once
on CPU and is raised as ``LostProcessError``, naming the processes whose
heartbeat (a counter each bumps in a file of the run's workdir, which every
process sees) stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MEMBER_AXIS = "member"


class LostProcessError(RuntimeError):
  """Another process of the run stopped (died, or lost its connection)."""


# ------------------------------------------------------------------ processes

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
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not coordinator_address or jax.distributed.is_initialized():
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


def is_chief() -> bool:
  """Whether this is process 0, which writes what is written once."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op in one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def all_gather_ints(values: list[int]) -> np.ndarray:
  """int64 [P, n]: every process's ``values`` (the same n everywhere), row p
  from process p. In one process, [1, n] without communication."""
  row = np.asarray(values, np.int64)
  if jax.process_count() == 1:
    return row[None]
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(row)).reshape(jax.process_count(), -1)


# ------------------------------------------------------------------ meshes

def data_mesh() -> Mesh:
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


def member_mesh(num_members: int, batch_size: int, member_devices: int | None = None) -> Mesh:
  """A ('member', 'data') mesh over every device of every process.

  ``member_devices`` (default: the largest divisor of the device count that
  divides K) devices split the members; the rest of each column splits a
  member's batch. Devices are ordered by process, so with several processes
  each holds whole members (``check_process_split``).

  Raises:
    ValueError: when K or B does not split evenly, or K over the processes.
  """
  devices = np.asarray(sorted(jax.devices(), key=lambda d: (d.process_index, d.id)))
  n = devices.size
  if member_devices is None:
    member_devices = math.gcd(num_members, n)
  if n % member_devices or num_members % member_devices:
    raise ValueError(f"member_devices={member_devices} must divide both the device count ({n}) "
                     f"and the number of members ({num_members}).")
  data_devices = n // member_devices
  if batch_size % data_devices:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {data_devices} devices "
                     "that split each member's batch.")
  check_process_split(num_members, data_devices, jax.process_count(), jax.local_device_count())
  return Mesh(devices.reshape(member_devices, data_devices), (MEMBER_AXIS, DATA_AXIS))


def check_process_split(num_members: int, data_devices: int, process_count: int,
                        local_device_count: int) -> None:
  """Raises ValueError unless every process can hold whole members: K
  divisible by the process count, and each member's ``data_devices`` on one
  process (so no member's state is split or copied across hosts)."""
  if process_count == 1:
    return
  if num_members % process_count:
    raise ValueError(f"{num_members} members cannot be split over {process_count} processes: "
                     f"use a multiple of {process_count} members.")
  if local_device_count % data_devices:
    raise ValueError(f"each member's batch is split over {data_devices} devices, more than (or "
                     f"not a divisor of) the {local_device_count} devices of one process: set "
                     f"member_devices so that a member's devices are on one process.")


def member_sharding(mesh: Mesh) -> NamedSharding:
  """A leading member axis [K] split over 'member'."""
  return NamedSharding(mesh, P(MEMBER_AXIS))


# ------------------------------------------------------------------ global arrays

def to_global(local: Any, sharding: NamedSharding, size: int, axis: int = 0) -> Any:
  """Global arrays from each process's part of one axis.

  Args:
    local: a pytree of arrays: the entries along ``axis`` that this
      process's devices hold under ``sharding`` (all of them in one process;
      the whole array where ``sharding`` replicates).
    sharding: how the global arrays are laid out.
    size: the global length of ``axis``.
    axis: the axis that ``sharding`` splits over the processes.

  Returns:
    The same pytree of global arrays, ``axis`` of length ``size``.
  """
  def one(x):
    x = np.asarray(x)
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return jax.tree.map(one, local)


def held_rows(sharding: NamedSharding, size: int) -> list[int]:
  """The entries of a leading axis of length ``size``, laid out by
  ``sharding``, that this process's devices hold (all of them in one)."""
  rows = set()
  for index in sharding.addressable_devices_indices_map((size,)).values():
    lead = index[0] if index else slice(None)
    rows.update(range(*lead.indices(size)))
  return sorted(rows)


def local_value(x: jax.Array) -> np.ndarray:
  """This process's rows of a global array [K, ...], in order, on the host:
  ``x`` itself (``jax.device_get``) in one process."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  by_start = {}
  for shard in x.addressable_shards:
    lead = shard.index[0] if shard.index else slice(None)
    by_start.setdefault(lead.indices(x.shape[0])[0], shard)   # replicas of the same rows
  return np.concatenate([np.asarray(by_start[k].data) for k in sorted(by_start)])


def local_tree(tree: Any) -> Any:
  """``local_value`` of every leaf (typed PRNG keys through their key data)."""
  def one(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(local_value(jax.random.key_data(x)))
    return local_value(x)
  return jax.tree.map(one, tree)


# ------------------------------------------------------------------ lost processes

class Heartbeat:
  """A counter this process bumps every ``interval`` seconds in the file
  ``folder/.heartbeat/<process>`` (a folder every process sees); ``lost()``
  names the processes whose counters stopped. Inactive in one process."""

  def __init__(self, folder: str | os.PathLike, interval: float = 0.5):
    self.interval = interval
    self._folder = pathlib.Path(folder) / ".heartbeat"
    self._stop = threading.Event()
    self._thread = None
    self.active = jax.process_count() > 1

  def __enter__(self) -> Heartbeat:
    if self.active:
      self._folder.mkdir(parents=True, exist_ok=True)
      self._thread = threading.Thread(target=self._beat, daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5 * self.interval)

  def _beat(self) -> None:
    path, count = self._folder / str(jax.process_index()), 0
    while not self._stop.is_set():
      count += 1
      try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(count))
        tmp.replace(path)
      except OSError:      # the folder is gone: lost() of the others reports it
        return
      self._stop.wait(self.interval)

  def _counts(self) -> dict[int, str | None]:
    out = {}
    for p in range(jax.process_count()):
      if p != jax.process_index():
        try:
          out[p] = (self._folder / str(p)).read_text()
        except OSError:    # not written yet
          out[p] = None
    return out

  def lost(self, wait: float = 3.0) -> list[int]:
    """The other processes whose counter did not move in ``wait`` seconds."""
    before = self._counts()
    time.sleep(wait)
    after = self._counts()
    return [p for p in before if after[p] is None or after[p] == before[p]]


@contextlib.contextmanager
def lost_process_errors(heartbeat: Heartbeat, what: Callable[[], str]) -> Iterator[None]:
  """Raises a failed collective of a multi-process run as
  ``LostProcessError`` naming the lost process(es); ``what()`` is added to
  the message (where the run stands, how to resume)."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if not heartbeat.active:
      raise
    lost = heartbeat.lost()
    who = (f"process {', '.join(map(str, lost))} of {jax.process_count()} stopped responding"
           if lost else "a collective with another process failed")
    raise LostProcessError(f"{who} (seen by process {jax.process_index()}): {what()} "
                           f"[{str(e).splitlines()[0][:200]}]") from e
