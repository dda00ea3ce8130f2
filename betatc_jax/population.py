"""Population training: K independent runs computed together as one program.

A population is a base config plus K members, each of which overrides only
``MEMBER_KEYS`` (seed, learning rate, objective, α, β, γ, warm-up,
estimator); architecture, latent size, batch size, dataset and step count are
shared. The K train states are stacked on a leading axis and one step is
``jax.vmap(train_lib.train_step)``: the members' hyperparameters are arrays
in the state (``TrainState.weights``, ``learning_rate``), so one
compilation serves every member.

Member i is the single run of its config (``member_config``): the same
initialisation (``train_lib.init_params``), noise (``fold_in(key, step)``)
and batches (``pipeline.batch_indices(seed, step)``), so
``train.py --config`` of that config reproduces it (tests/population_test.py
checks the losses at every logged step).

Data: with ``data_on_device`` the uint8 dataset is put on the accelerator
once and each step gathers its [K, B] batch there from indices; the indices
of a whole logging interval are computed on the host (the same function as
the host pipeline) and sent in one transfer, so the step never waits on host
work. Without it the host gathers each batch (for datasets that do not fit).

Sharding: a ('member', 'data') mesh. Members are spread over 'member' (no
communication between them); each member's batch is split over 'data'.

Layout of a population workdir W:

  W/population.json          the base config and the members
  W/checkpoints/<step>       one Orbax checkpoint of the whole population
  W/members/<name>/          an ordinary single-run workdir per member:
      config.json, metrics.jsonl, tb/, checkpoints/<step> (written by
      ``export_members``), so ``python -m betatc_jax.evaluate --workdir
      W/members/<name>`` and every other tool work on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from betatc_jax import checkpointing, evaluate, losses, train_lib
from betatc_jax.data import pipeline
from betatc_jax.data.ground_truth import GroundTruthDataset, gather_rows

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


class NonFiniteLossError(train_lib.NonFiniteLossError):
  """A member's loss or gradients became NaN/inf; the population stopped."""


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
  """A ('member', 'data') mesh over all local devices.

  ``member_devices`` (default: the largest divisor of the device count that
  divides K) devices split the members; the rest of each column splits a
  member's batch.

  Raises:
    ValueError: when K or B does not split evenly.
  """
  devices = np.asarray(jax.devices())
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
  return Mesh(devices.reshape(member_devices, data_devices), (MEMBER_AXIS, DATA_AXIS))


def _member_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(MEMBER_AXIS))


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
  rows = jax.lax.dynamic_index_in_dim(indices, offset, keepdims=False)    # [K, B]
  return population_step(states, images[rows], keys)


def member_batch_indices(seeds: Sequence[int], start_step: int, num_steps: int, batch_size: int,
                         dataset_size: int) -> np.ndarray:
  """int32 [S, K, B]: each member's ``pipeline.batch_indices`` for S steps
  (members with the same seed share their data order, computed once)."""
  by_seed = {}
  for seed in dict.fromkeys(seeds):
    by_seed[seed] = np.stack([pipeline.batch_indices(seed, step, batch_size, dataset_size)
                              for step in range(start_step, start_step + num_steps)])
  return np.stack([by_seed[s] for s in seeds], axis=1).astype(np.int32)


# ------------------------------------------------------------------ workdir

def member_dir(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "members" / name


def latest_step(workdir: str | pathlib.Path) -> int:
  """The step of the newest population checkpoint in ``workdir``; 0 if none."""
  directory = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
  return max(steps, default=0)


def _population_record(base: ml_collections.ConfigDict, members: Sequence[Member]) -> dict:
  return {"base": json.loads(base.to_json()),
          "members": [{"name": m.name, "overrides": dict(m.overrides)} for m in members]}


def load_population(workdir: str | pathlib.Path
                    ) -> tuple[ml_collections.ConfigDict, list[Member]]:
  """The base config and members a population workdir was trained with.

  Raises:
    FileNotFoundError: no population.json in ``workdir``.
  """
  path = pathlib.Path(workdir) / "population.json"
  if not path.is_file():
    raise FileNotFoundError(f"{workdir} has no population.json: is it a population workdir?")
  record = json.loads(path.read_text())
  base = train_lib.with_defaults(ml_collections.ConfigDict(record["base"]))
  return base, [Member(m["name"], m["overrides"]) for m in record["members"]]


# ------------------------------------------------------------------ the loop

def train_population(base: ml_collections.ConfigDict, members: Sequence[Member],
                     workdir: str | pathlib.Path, *, data_on_device: bool = True,
                     member_devices: int | None = None,
                     dataset: GroundTruthDataset | None = None
                     ) -> tuple[train_lib.TrainState, jax.Array]:
  """Trains every member to ``base.num_train_steps`` together, resuming from
  ``workdir/checkpoints``; each member's metrics.jsonl and TensorBoard events
  go to ``workdir/members/<name>``. Single process only.

  Args:
    base: the shared config (``num_train_steps``, logging and checkpoint
      intervals, model, data, batch size).
    members: the runs; see ``Member`` and ``MEMBER_KEYS``.
    workdir: the population workdir (layout in the module docstring).
    data_on_device: keep the dataset on the accelerator (False: gather each
      batch on the host).
    member_devices: devices along the mesh's 'member' axis (``make_mesh``).
    dataset: the loaded dataset of ``base`` (loaded from the config if None).

  Returns:
    (stacked states, step keys [K]) at ``base.num_train_steps``.

  Raises:
    ValueError: for an invalid population, before any work; also when
      ``workdir`` holds a different population.
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
    NonFiniteLossError: a member's loss went non-finite; the message names
      the member and the step; the last good checkpoint stays.
  """
  from betatc_jax.logging_utils import MetricWriter

  if jax.process_count() > 1:
    raise ValueError("Populations run in one process (use the mesh's devices instead).")
  configs = validate_population(base, members)
  dataset = dataset if dataset is not None else train_lib.dataset_from_config(base)
  train_lib.check_holds_a_batch(dataset, base.batch_size)
  mesh = make_mesh(len(members), base.batch_size, member_devices)
  workdir = pathlib.Path(workdir)
  record = _population_record(base, members)
  record_path = workdir / "population.json"
  if record_path.is_file():
    saved = json.loads(record_path.read_text())
    if saved["members"] != record["members"]:
      raise ValueError(f"{workdir} holds another population (different members); use a new "
                       "workdir.")
  workdir.mkdir(parents=True, exist_ok=True)

  by_member = _member_sharding(mesh)
  states, keys = create_population_state(configs, dataset.observation_shape, len(dataset))
  states, keys = jax.device_put((states, keys), by_member)
  manager = checkpointing.make_manager(workdir, base.keep_checkpoints)
  restored_step, states, keys = train_lib.restore_state(manager, states, keys)
  start_step = int(states.step[0])
  record_path.write_text(json.dumps(record, indent=2))
  for member, config in zip(members, configs):
    directory = member_dir(workdir, member.name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config.to_json(indent=2))
    train_lib.truncate_metrics(directory / "metrics.jsonl", start_step)

  batch_sharding = NamedSharding(mesh, P(MEMBER_AXIS, DATA_AXIS))
  indices_sharding = NamedSharding(mesh, P(None, MEMBER_AXIS, DATA_AXIS))   # [S, K, B]
  state_shardings = jax.tree.map(lambda _: by_member, states)
  out_shardings = (state_shardings, by_member)
  if data_on_device:
    images = jax.device_put(dataset.images, NamedSharding(mesh, P()))
    step_fn = jax.jit(population_step_from_indices, donate_argnums=0,
                      in_shardings=(state_shardings, NamedSharding(mesh, P()),
                                    indices_sharding,
                                    NamedSharding(mesh, P()), by_member),
                      out_shardings=out_shardings)
  else:
    step_fn = jax.jit(population_step, donate_argnums=0,
                      in_shardings=(state_shardings, batch_sharding, by_member),
                      out_shardings=out_shardings)

  writers = [MetricWriter(member_dir(workdir, m.name)) for m in members]
  seeds = [c.seed for c in configs]
  total, batch_size = base.num_train_steps, base.batch_size
  boundaries = sorted({s for s in range(start_step + 1, total + 1)
                       if s % base.log_every_steps == 0 or s % base.checkpoint_every_steps == 0}
                      | {total})
  last_saved = restored_step
  step = start_step
  try:
    def interval_indices(i):
      if i >= len(boundaries):
        return None
      first = boundaries[i - 1] if i else start_step
      return member_batch_indices(seeds, first, boundaries[i] - first, batch_size, len(dataset))

    upcoming = interval_indices(0) if start_step < total else None
    for i, boundary in enumerate(boundaries if start_step < total else []):
      t0 = time.perf_counter()
      num = boundary - step
      indices, pending = upcoming, []
      if data_on_device:
        indices = jax.device_put(indices, indices_sharding)
        for offset in range(num):
          states, metrics = step_fn(states, images, indices, np.int32(offset), keys)
          pending.append(metrics)
      else:
        for offset in range(num):
          batch = np.stack([gather_rows(dataset.images, rows) for rows in indices[offset]])
          states, metrics = step_fn(states, jax.device_put(batch, batch_sharding), keys)
          pending.append(metrics)
      # The steps are dispatched, not done: the next interval's indices are
      # computed while the device works, so it never waits on them.
      upcoming = interval_indices(i + 1)
      host = jax.device_get(pending)
      elapsed = time.perf_counter() - t0
      step = boundary
      for k, (member, writer) in enumerate(zip(members, writers)):
        rows = [{name: value[k] for name, value in m.items()} for m in host]
        bad = train_lib.first_non_finite(rows)
        if bad is not None:
          manager.wait_until_finished()
          raise NonFiniteLossError(train_lib.non_finite_message(
              rows[bad], step - num + bad + 1, last_saved, manager.directory,
              who=f" of member {member.name!r}"))
        if step % base.log_every_steps == 0 or step == total:
          row = train_lib.mean_row(rows)
          row.update(step=step, steps_per_sec=num / elapsed,
                     images_per_sec=num * batch_size / elapsed,
                     population_images_per_sec=num * batch_size * len(members) / elapsed)
          writer.write(row)
      if step % base.checkpoint_every_steps == 0 or step == total:
        checkpointing.save(manager, step, train_lib.checkpoint_tree(states, keys))
        last_saved = step
  finally:
    for writer in writers:
      writer.close()
    manager.wait_until_finished()
  return states, keys


# ------------------------------------------------------------------ members as runs

def export_members(workdir: str | pathlib.Path, states: train_lib.TrainState, keys: jax.Array,
                   members: Sequence[Member], keep: int = 1) -> list[pathlib.Path]:
  """Writes each member's state as an ordinary single-run checkpoint in
  ``workdir/members/<name>/checkpoints/<step>`` (keeping ``keep``).

  Returns:
    The member workdirs.
  """
  host = jax.device_get(train_lib.checkpoint_tree(states, keys))
  paths = []
  for k, member in enumerate(members):
    directory = member_dir(workdir, member.name)
    manager = checkpointing.make_manager(directory, keep)
    tree = unstack(host, k)
    if manager.latest_step() != int(tree["step"]):
      checkpointing.save(manager, int(tree["step"]), tree)
    manager.wait_until_finished()
    manager.close()
    paths.append(directory)
  return paths


def evaluate_members(base: ml_collections.ConfigDict, members: Sequence[Member],
                     states: train_lib.TrainState, dataset: GroundTruthDataset, *,
                     workdir: str | pathlib.Path | None = None, other_metrics: bool = False
                     ) -> list[dict[str, Any]]:
  """``evaluate.evaluate_params`` of every member, one after another (the
  encoder is compiled once for all; MIG's estimator dominates and does not
  batch over members). With ``workdir``, each member's eval.json and plots go
  to its member workdir.

  Returns:
    One result per member, in order, with ``name`` added.
  """
  configs = validate_population(base, members)
  params = jax.device_get(states.params)
  results = []
  for k, (member, config) in enumerate(zip(members, configs)):
    result = evaluate.evaluate_params(
        config, unstack(params, k), dataset, step=int(states.step[k]),
        workdir=member_dir(workdir, member.name) if workdir is not None else None,
        other_metrics=other_metrics)
    results.append(dict(result, name=member.name))
  return results
