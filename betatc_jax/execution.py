"""How the members' steps run: every member in one vmapped program, or
each member's own single-run step in turn.

* ``"vmap"``: the K train states are stacked [K] and spread over the
  ('member', 'data') mesh; one compiled ``vmap(train_step)`` updates all of
  them, on batches gathered on the device (or the host) from each member's
  indices. On an accelerator this fills the device with K runs at once.
* ``"sequential"``: each member keeps its own state, replicated over the
  1-D 'data' mesh, and is updated by the plain jitted ``step.train_step``
  (``step.jit_train_step``, a single run's program) on its batch, gathered
  on the host as a single run's pipeline gathers it (each process its rows
  of it). On a CPU nothing is gained by batching the members' GEMMs, and
  this costs what the K single runs cost; a member's numbers are its single
  run's, bit for bit. A single run is this with K = 1.
* ``"auto"``: ``"sequential"`` on a CPU in one process, else ``"vmap"``.

Both take the same stacked state in (a fresh population, or a restored
checkpoint) and give the same stacked state out, so a population
checkpointed in one mode resumes in the other. Both keep a diverged member's
last finite state inside its compiled step (``step.train_step_keeping_finite``)
when asked to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from betatc_jax import mesh as mesh_lib
from betatc_jax import step as step_lib
from betatc_jax.data import pipeline
from betatc_jax.data.ground_truth import GroundTruthDataset, gather_rows
from betatc_jax.state import TrainState

EXECUTION_MODES = ("auto", "vmap", "sequential")

# tick(metrics of the step just dispatched, offset in the interval)
Tick = Callable[[dict[str, Any], int], None]


def resolve_mode(mode: str) -> str:
  """``"vmap"`` or ``"sequential"`` for ``mode`` (``"auto"``: sequential on
  a CPU in one process).

  Raises:
    ValueError: an unknown mode.
  """
  if mode not in EXECUTION_MODES:
    raise ValueError(f"execution must be one of {EXECUTION_MODES}, got {mode!r}.")
  if mode == "auto":
    return "sequential" if jax.default_backend() == "cpu" and jax.process_count() == 1 else "vmap"
  return mode


def _nan_metrics(like: dict[str, Any]) -> dict[str, np.ndarray]:
  """A frozen member's row of metrics: NaN, ``live`` 0."""
  out = {k: np.full(np.shape(v), np.nan, np.float32) for k, v in like.items()}
  if "live" in out:
    out["live"] = np.zeros_like(out["live"])
  return out


class Vmapped:
  """The members stacked [K] over a ('member', 'data') mesh, one vmapped step.

  Args:
    mesh: the population's ('member', 'data') mesh.
    states, keys: the stacked states and keys [K], global arrays sharded by
      member.
    dataset: the training set.
    live: bool [K_here], the members of this process still training.
    freeze: keep a diverged member's last finite state.
    data_on_device: gather batches on the device from indices (False: on
      the host, each step).
  """

  def __init__(self, mesh: Mesh, states: TrainState, keys: jax.Array,
               dataset: GroundTruthDataset, live: np.ndarray, *, freeze: bool,
               data_on_device: bool):
    self.states, self.keys = states, keys
    self._freeze, self._data_on_device, self._dataset = freeze, data_on_device, dataset
    by_member = mesh_lib.member_sharding(mesh)
    self._num_members = keys.shape[0]
    self._batch_sharding = NamedSharding(mesh, P(mesh_lib.MEMBER_AXIS, mesh_lib.DATA_AXIS))
    self._indices_sharding = NamedSharding(mesh, P(None, mesh_lib.MEMBER_AXIS,
                                                   mesh_lib.DATA_AXIS))     # [S, K, B]
    state_shardings = jax.tree.map(lambda _: by_member, states)
    lead = (state_shardings, by_member) if freeze else (state_shardings,)
    whole = NamedSharding(mesh, P())
    if data_on_device:     # each process puts the dataset on its own devices, once
      self._images = mesh_lib.to_global(dataset.images, whole, len(dataset))
      step = (step_lib.population_step_keeping_finite_from_indices if freeze
              else step_lib.population_step_from_indices)
      inputs = (whole, self._indices_sharding, whole, by_member)
    else:
      step = step_lib.population_step_keeping_finite if freeze else step_lib.population_step
      inputs = (self._batch_sharding, by_member)
    self._step = jax.jit(step, donate_argnums=0, in_shardings=(*lead, *inputs),
                         out_shardings=(*lead, by_member))
    self._live = mesh_lib.to_global(np.asarray(live, bool), by_member, self._num_members)

  def run(self, indices: np.ndarray, live_host: np.ndarray, tick: Tick,
          stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
    """Dispatches the steps of one interval, ending early when ``stop()``.

    Args:
      indices: int32 [S, K_here, B], the batch rows of this process's
        members for the interval's S steps.
      live_host: bool [K_here], unused here (a frozen member is stepped and
        kept frozen inside the program).
      tick: called after each dispatched step.
      stop: checked before each step.

    Returns:
      The metrics of the steps dispatched (device arrays, each [K]).
    """
    pending = []
    if self._data_on_device:
      global_indices = mesh_lib.to_global(indices, self._indices_sharding, self._num_members,
                                          axis=1)
    for offset in range(len(indices)):
      if stop():
        break
      if self._data_on_device:
        args = (self._images, global_indices, np.int32(offset), self.keys)
      else:
        batch = np.stack([gather_rows(self._dataset.images, rows) for rows in indices[offset]])
        args = (mesh_lib.to_global(batch, self._batch_sharding, self._num_members), self.keys)
      if self._freeze:
        self.states, self._live, metrics = self._step(self.states, self._live, *args)
      else:
        self.states, metrics = self._step(self.states, *args)
      pending.append(metrics)
      tick(metrics, offset)
    return pending

  @staticmethod
  def host_rows(pending: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """The interval's metrics on the host: per step, each metric [K_here]."""
    return [{name: mesh_lib.local_value(v) for name, v in m.items()} for m in pending]

  def stacked(self) -> tuple[TrainState, jax.Array]:
    return self.states, self.keys


class Sequential:
  """Each member's own state and plain jitted step, one member after another.

  Args:
    mesh: the 1-D 'data' mesh (``mesh.data_mesh``).
    states, keys: the stacked states and keys [K] (any layout; each member
      is copied out once).
    dataset: the training set.
    live: bool [K], the members still training.
    freeze: keep a diverged member's last finite state inside its step.
  """

  def __init__(self, mesh: Mesh, states: TrainState, keys: jax.Array,
               dataset: GroundTruthDataset, live: np.ndarray, *, freeze: bool):
    self._replicated = mesh_lib.replicated(mesh)
    self._data = mesh_lib.data_sharding(mesh)
    self._dataset, self._freeze = dataset, freeze
    take = jax.jit(lambda tree, k: jax.tree.map(lambda x: x[k], tree),
                   out_shardings=self._replicated)
    self._states = [take(states, np.int32(k)) for k in range(len(live))]
    self._keys = [take(keys, np.int32(k)) for k in range(len(live))]
    self._live = [jax.device_put(jnp.asarray(bool(v)), self._replicated) for v in live]
    state_sharding = jax.tree.map(lambda _: self._replicated, self._states[0])
    if freeze:
      self._step = jax.jit(step_lib.train_step_keeping_finite, donate_argnums=0,
                           in_shardings=(state_sharding, self._replicated, self._data,
                                         self._replicated),
                           out_shardings=(state_sharding, self._replicated, self._replicated))
    else:
      self._step = step_lib.jit_train_step(mesh, state_sharding)
    self._stack = jax.jit(lambda *trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees),
                          out_shardings=self._replicated)

  def _batch(self, rows: np.ndarray) -> jax.Array:
    return pipeline.global_batch(self._dataset, rows, self._data)

  def run(self, indices: np.ndarray, live_host: np.ndarray, tick: Tick,
          stop: Callable[[], bool] = lambda: False) -> list[list[Any]]:
    """Dispatches the steps of one interval, member by member within each
    step, ending early when ``stop()`` (checked before each step); a member
    the host knows to be frozen is not stepped.

    Returns:
      Per step dispatched, each member's metrics (device scalars), None
      where skipped.
    """
    pending = []
    for offset in range(len(indices)):
      if stop():
        break
      row = []
      for k in range(len(self._states)):
        if not live_host[k]:
          row.append(None)
          continue
        batch = self._batch(indices[offset, k])
        if self._freeze:
          self._states[k], self._live[k], metrics = self._step(self._states[k], self._live[k],
                                                               batch, self._keys[k])
        else:
          self._states[k], metrics = self._step(self._states[k], batch, self._keys[k])
        row.append(metrics)
      pending.append(row)
      last = next((m for m in reversed(row) if m is not None), None)
      if last is not None:
        tick(last, offset)
    return pending

  @staticmethod
  def host_rows(pending: list[list[Any]]) -> list[dict[str, np.ndarray]]:
    """The interval's metrics on the host: per step, each metric [K]."""
    host = jax.device_get(pending)
    like = next((m for row in host for m in row if m is not None), None)
    if like is None:
      return [{} for _ in host]
    out = []
    for row in host:
      filled = [m if m is not None else _nan_metrics(like) for m in row]
      out.append({name: np.stack([np.asarray(m[name]) for m in filled]) for name in like})
    return out

  def stacked(self) -> tuple[TrainState, jax.Array]:
    """The members' states and keys stacked [K] (a copy)."""
    return self._stack(*self._states), self._stack(*self._keys)


def make_executor(mode: str, mesh: Mesh, states: TrainState, keys: jax.Array,
                  dataset: GroundTruthDataset, live: np.ndarray, *, freeze: bool,
                  data_on_device: bool) -> Vmapped | Sequential:
  """The executor of ``mode`` (already resolved) over ``states``."""
  if mode == "sequential":
    return Sequential(mesh, states, keys, dataset, live, freeze=freeze)
  return Vmapped(mesh, states, keys, dataset, live, freeze=freeze, data_on_device=data_on_device)
