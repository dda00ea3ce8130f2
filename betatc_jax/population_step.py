"""The stacked part of a population (``population`` trains, checkpoints and
evaluates it): members and their configs, the ('member', 'data') mesh, the
stacked train states and the vmapped step (with or without keeping a
diverged member's last finite state) and the members' batch indices. The module docstring of
``population`` describes the whole."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from betatc_jax import losses, processes, train_lib
from betatc_jax.data import pipeline

MEMBER_AXIS = "member"
DATA_AXIS = "data"
MEMBER_KEYS = ("seed", "learning_rate", "lr_schedule", "lr_decay", "objective.name",
               "objective.alpha", "objective.beta", "objective.gamma", "objective.anneal_steps",
               "objective.estimator", "objective.marginal_estimator",
               "objective.factorvae_gamma", "objective.dip_lambda_od",
               "objective.dip_lambda_d_factor", "objective.capacity_gamma",
               "objective.capacity_max", "objective.capacity_steps")
_NAME = re.compile(r"^[A-Za-z0-9_.=-]+$")


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a population: a name (its workdir under ``members/``) and its
  overrides of the base config, keyed by dotted path (``"objective.beta"``)."""
  name: str
  overrides: Mapping[str, Any]


# ------------------------------------------------------------------ configs

def member_config(base: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """The single-run config of ``member``: ``base`` with its overrides.

  Raises:
    ValueError: for an override outside ``MEMBER_KEYS``.
  """
  bad = sorted(set(member.overrides) - set(MEMBER_KEYS))
  if bad:
    raise ValueError(f"Member {member.name!r} overrides {bad}; a member may only set "
                     f"{', '.join(MEMBER_KEYS)} (the rest is shared by the population).")
  config = ml_collections.ConfigDict(base.to_dict())
  for key, value in member.overrides.items():
    train_lib.set_config_key(config, key, value)
  return config


def validate_population(base: ml_collections.ConfigDict, members: Sequence[Member]) -> list:
  """Checks the base and every member config before any work.

  Returns:
    The member configs, in order.

  Raises:
    ValueError: no members, a repeated or unusable name, a bad override, or
      an invalid member config (named).
  """
  if not members:
    raise ValueError("A population needs at least one member.")
  names = [m.name for m in members]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"Member names must be unique; repeated: {repeated}.")
  for name in names:
    if not _NAME.match(name):
      raise ValueError(f"Member name {name!r} is not a plain directory name "
                       "(letters, digits, '_', '-', '.', '=').")
  train_lib.validate_config(base)
  configs = []
  for member in members:
    config = member_config(base, member)
    try:
      train_lib.validate_config(config)
    except ValueError as e:
      raise ValueError(f"Member {member.name!r}: {e}") from e
    configs.append(config)
  with_critic = {c.objective.name in losses.CRITIC_OBJECTIVES for c in configs}
  if len(with_critic) > 1:
    raise ValueError(
        f"Members with a discriminator ({', '.join(losses.CRITIC_OBJECTIVES)}) and members "
        "without one cannot share a population (their train states differ): train them as "
        "two populations.")
  return configs


# ------------------------------------------------------------------ mesh

def make_mesh(num_members: int, batch_size: int, member_devices: int | None = None) -> Mesh:
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
  return NamedSharding(mesh, P(MEMBER_AXIS))


def held_members(mesh: Mesh, num_members: int) -> list[int]:
  """The indices of the members this process's devices hold (all in one
  process; a contiguous block of K / P with P processes)."""
  return processes.held_rows(member_sharding(mesh), num_members)


# ------------------------------------------------------------------ state and step

def stack(trees: Sequence[Any]) -> Any:
  """K pytrees of the same structure -> one with a leading [K] axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Member ``index`` of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)


def create_population_state(configs: Sequence[ml_collections.ConfigDict],
                            image_shape: tuple[int, int, int], dataset_size: int
                            ) -> tuple[train_lib.TrainState, jax.Array]:
  """The stacked train states and step keys [K] of the members.

  Each member's parameters and key come from ``train_lib.init_params(seed)``
  exactly as its single run's do; Adam's state is initialised per member.
  """
  model = train_lib.make_model(configs[0], image_shape)
  init = jax.jit(lambda seed: train_lib.init_params(model, image_shape, seed))
  params, keys = zip(*(init(c.seed) for c in configs))
  params = stack(params)
  tx = train_lib.adam_without_learning_rate()
  state = train_lib.TrainState(
      step=jnp.zeros(len(configs), jnp.int32), apply_fn=model.apply, params=params, tx=tx,
      opt_state=jax.vmap(tx.init)(params),
      weights=stack([train_lib.objective_weights(c) for c in configs]),
      learning_rate=jnp.asarray([c.learning_rate for c in configs], jnp.float32),
      **stack([train_lib.learning_rate_schedule(c, dataset_size) for c in configs]),
      objective=train_lib.make_objective(configs[0], dataset_size),
      random_flip=bool(configs[0].dataset.random_flip))
  critics = [train_lib.critic_fields(c, c.seed) for c in configs]
  if critics[0]:
    state = state.replace(critic_params=stack([c["critic_params"] for c in critics]),
                          critic_opt_state=stack([c["critic_opt_state"] for c in critics]),
                          critic_apply=critics[0]["critic_apply"],
                          critic_tx=critics[0]["critic_tx"])
  return state, jnp.stack(keys)


def population_step(states: train_lib.TrainState, batches: jax.Array, keys: jax.Array
                    ) -> tuple[train_lib.TrainState, dict[str, jax.Array]]:
  """One update of every member: ``vmap(train_step)``.

  Args:
    states: stacked train states, leading axis [K].
    batches: uint8 [K, B, H, W, C], member k's batch in row k.
    keys: [K] the members' base keys.

  Returns:
    (new states, metrics), each metric [K].
  """
  return jax.vmap(train_lib.train_step)(states, batches, keys)


def population_step_keeping_finite(states: train_lib.TrainState, live: jax.Array,
                                   batches: jax.Array, keys: jax.Array
                                   ) -> tuple[train_lib.TrainState, jax.Array,
                                              dict[str, jax.Array]]:
  """``population_step`` where a diverged member keeps its last finite state
  (``train_lib.train_step_keeping_finite``, member by member): ``live``
  bool [K] in and out."""
  return jax.vmap(train_lib.train_step_keeping_finite)(states, live, batches, keys)


def _rows(indices: jax.Array, offset: jax.Array) -> jax.Array:
  """Step ``offset``'s rows [K, B] of the interval's indices [S, K, B]."""
  return jax.lax.dynamic_index_in_dim(indices, offset, keepdims=False)


def population_step_from_indices(states: train_lib.TrainState, images: jax.Array,
                                 indices: jax.Array, offset: jax.Array, keys: jax.Array
                                 ) -> tuple[train_lib.TrainState, dict[str, jax.Array]]:
  """``population_step`` on batches gathered on the device.

  Args:
    states, keys: as in ``population_step``.
    images: uint8 [N, H, W, C], the dataset, resident on the device.
    indices: int32 [S, K, B], the rows of S consecutive steps' batches.
    offset: int32 scalar, which of the S steps this is.
  """
  return population_step(states, images[_rows(indices, offset)], keys)


def population_step_keeping_finite_from_indices(
    states: train_lib.TrainState, live: jax.Array, images: jax.Array, indices: jax.Array,
    offset: jax.Array, keys: jax.Array
) -> tuple[train_lib.TrainState, jax.Array, dict[str, jax.Array]]:
  """``population_step_keeping_finite`` on batches gathered on the device
  (the arguments of ``population_step_from_indices``)."""
  return population_step_keeping_finite(states, live, images[_rows(indices, offset)], keys)


def member_batch_indices(seeds: Sequence[int], start_step: int, num_steps: int, batch_size: int,
                         dataset_size: int) -> np.ndarray:
  """int32 [S, K, B]: each member's ``pipeline.batch_indices`` for S steps
  (members with the same seed share their data order, computed once)."""
  by_seed = {}
  for seed in dict.fromkeys(seeds):
    by_seed[seed] = np.stack([pipeline.batch_indices(seed, step, batch_size, dataset_size)
                              for step in range(start_step, start_step + num_steps)])
  return np.stack([by_seed[s] for s in seeds], axis=1).astype(np.int32)
