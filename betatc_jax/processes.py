"""Several processes (hosts) as one program: JAX's multi-controller runtime.

Every process runs the same program; ``jax.distributed.initialize``
(``sharding.maybe_initialize_distributed``) joins them, and a mesh over
``jax.devices()`` then spans every device of every process. An array
sharded over such a mesh is *global*: each process holds, and may read,
only the shards on its own devices. This module turns per-process data into
global arrays and back, and lets the processes agree on small decisions
(stop, deadline) so that none waits forever in a collective the others
skipped.

A lost process: a collective whose peer died fails fast on CPU (the
connection closes) and is raised here as ``LostProcessError``, naming the
process whose heartbeat stopped (``Heartbeat``: a counter each process
bumps in the coordinator's key-value store). A peer that hangs without
dying is caught by JAX's own heartbeat (``heartbeat_timeout_seconds`` of
``jax.distributed.initialize``), which ends every process with an error
naming the task.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

_HEARTBEAT_KEY = "betatc_jax/heartbeat/{}"


class LostProcessError(RuntimeError):
  """Another process of the run stopped (died, or lost its connection)."""


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


def all_gather_ints(values: list[int]) -> np.ndarray:
  """int64 [P, n]: every process's ``values`` (the same n everywhere), row p
  from process p. In one process, [1, n] without communication."""
  row = np.asarray(values, np.int64)
  if jax.process_count() == 1:
    return row[None]
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(row)).reshape(jax.process_count(), -1)


def process_count() -> int:
  """How many processes run this program."""
  return jax.process_count()


def is_chief() -> bool:
  """Whether this is process 0, which writes what is written once."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)`` (no-op in one)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _client():
  from jax._src import distributed
  return distributed.global_state.client


class Heartbeat:
  """A counter this process bumps every ``interval`` seconds in the
  coordinator's key-value store; ``lost()`` names the processes whose
  counters stopped. Inactive in one process."""

  def __init__(self, interval: float = 0.5):
    self.interval = interval
    self._stop = threading.Event()
    self._thread = None
    self.active = jax.process_count() > 1 and _client() is not None

  def __enter__(self) -> Heartbeat:
    if self.active:
      self._thread = threading.Thread(target=self._beat, daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5 * self.interval)

  def _beat(self) -> None:
    key, count = _HEARTBEAT_KEY.format(jax.process_index()), 0
    while not self._stop.is_set():
      count += 1
      try:
        _client().key_value_set(key, str(count), allow_overwrite=True)
      except Exception:   # the coordinator is gone: lost() reports it
        return
      self._stop.wait(self.interval)

  def _counts(self) -> dict[int, str | None]:
    out = {}
    for p in range(jax.process_count()):
      if p != jax.process_index():
        try:
          out[p] = _client().key_value_try_get(_HEARTBEAT_KEY.format(p))
        except Exception:   # not set yet, or no store
          out[p] = None
    return out

  def lost(self, wait: float = 3.0) -> list[int]:
    """The other processes whose counter did not move in ``wait`` seconds;
    [0] when the coordinator (process 0) itself cannot be reached."""
    try:
      _client().key_value_set(_HEARTBEAT_KEY.format(jax.process_index()) + "/probe", "1",
                              allow_overwrite=True)
    except Exception:
      return [0]
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
