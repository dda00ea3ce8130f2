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

Divergence (``on_non_finite``): ``"stop"`` (the default, as ``train.py``)
raises at the first non-finite loss or gradient of any member, keeping the
last good checkpoint. ``"freeze"`` keeps a diverged member's last finite
state inside the compiled step (``train_lib.train_step_keeping_finite``)
while the others train on;
its step is logged and ``members/<name>/frozen.json`` records it, so a
resumed population keeps it frozen and a report can mark its row.

Deadline (``deadline``): the loop stops at the first logging boundary after
which the next interval would end past the deadline, and returns the states
there (each member's ``step`` is its true step count).

Sharding: a ('member', 'data') mesh over every device of every process.
Members are spread over 'member' (no communication between them); each
member's batch is split over 'data'. With P processes each holds K / P whole
members and initialises, feeds (its members' indices only), logs and
checkpoints them, and ``export_members`` writes the members it holds; the
processes exchange only a few flags per logging interval, so that they agree
on when the loop ends (``processes``).

Layout of a population workdir W:

  W/population.json          the base config and the members
  W/checkpoints/<step>       one Orbax checkpoint of the whole population
  W/members/<name>/          an ordinary single-run workdir per member:
      config.json, metrics.jsonl, tb/, checkpoints/<step> (written by
      ``export_members``), so ``python -m betatc_jax.evaluate --workdir
      W/members/<name>`` and every other tool work on it.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from betatc_jax import checkpointing, evaluate, processes, sharding, stepping, train_lib
from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.population_step import (  # re-exported: the population's API
    MEMBER_AXIS, DATA_AXIS, MEMBER_KEYS, Member, member_config, validate_population, make_mesh,
    check_process_split, member_sharding, held_members, stack, unstack, create_population_state,
    population_step, population_step_from_indices, population_step_keeping_finite,
    member_batch_indices)

NON_FINITE_POLICIES = ("stop", "freeze")
FROZEN_FILE = "frozen.json"


class NonFiniteLossError(train_lib.NonFiniteLossError):
  """A member's loss or gradients became NaN/inf; the population stopped."""


# ------------------------------------------------------------------ workdir

def member_dir(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "members" / name


def latest_step(workdir: str | pathlib.Path) -> int:
  """The step of the newest population checkpoint in ``workdir``; 0 if none."""
  directory = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
  return max(steps, default=0)


def frozen_members(workdir: str | pathlib.Path) -> dict[str, dict[str, Any]]:
  """name -> its ``frozen.json`` record (``diverged_at_step``, ``kept_step``,
  loss, grad_norm) for every member that ``"freeze"`` froze."""
  directory = pathlib.Path(workdir) / "members"
  paths = sorted(directory.glob(f"*/{FROZEN_FILE}")) if directory.is_dir() else []
  return {p.parent.name: json.loads(p.read_text()) for p in paths}


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
                     dataset: GroundTruthDataset | None = None,
                     on_non_finite: str = "stop", deadline: float | None = None,
                     save_checkpoints: bool = True, progress: bool = False,
                     execution: str = "auto"
                     ) -> tuple[train_lib.TrainState, jax.Array]:
  """Trains every member to ``base.num_train_steps`` together, resuming from
  ``workdir/checkpoints``; each member's metrics.jsonl and TensorBoard events
  go to ``workdir/members/<name>``.

  Several processes (``base.distributed.*``, or ``JAX_COORDINATOR_ADDRESS``):
  every process calls this with the same arguments; the mesh spans all
  their devices and each process holds, initialises, feeds, logs and
  checkpoints only its own members (the module docstring). ``workdir`` must
  be on a filesystem every process sees.

  Args:
    base: the shared config (``num_train_steps``, logging and checkpoint
      intervals, model, data, batch size).
    members: the runs; see ``Member`` and ``MEMBER_KEYS``.
    workdir: the population workdir (layout in the module docstring).
    data_on_device: keep the dataset on the accelerator (False: gather each
      batch on the host).
    member_devices: devices along the mesh's 'member' axis (``make_mesh``).
    dataset: the loaded dataset of ``base`` (loaded from the config if None).
    on_non_finite: ``"stop"`` or ``"freeze"`` (module docstring).
    deadline: a ``time.time()`` after which no logging interval may end; the
      loop returns early, at a boundary, to honour it (None: no deadline).
    save_checkpoints: False writes no checkpoint (a machine whose disk does
      not outlive the call; a resumed call then starts from step 0).
    progress: a bar over the steps (on process 0).
    execution: ``"vmap"`` (one vmapped program for all members),
      ``"sequential"`` (each member's own single-run step in turn: a member's
      numbers are its single run's, bit for bit) or ``"auto"`` (sequential
      on a CPU in one process, else vmap); ``betatc_jax.stepping``.

  Returns:
    (stacked states, step keys [K]) at ``base.num_train_steps``, or at the
    boundary where the deadline stopped the loop; a frozen member's state is
    that of its ``kept_step``.

  Raises:
    ValueError: for an invalid population or policy, before any work; also
      when ``workdir`` holds a different population.
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
    NonFiniteLossError: with ``"stop"``, a member's loss went non-finite;
      the message names the member and the step; the last good checkpoint
      stays (in every process).
    processes.LostProcessError: another process stopped; the message names
      it and the last checkpoint, from which a relaunch resumes.
  """
  sharding.initialize_from_config(base)
  with processes.Heartbeat() as heartbeat, processes.lost_process_errors(
      heartbeat, lambda: _resume_advice(workdir)):
    return _train_population(base, members, workdir, data_on_device=data_on_device,
                             member_devices=member_devices, dataset=dataset,
                             on_non_finite=on_non_finite, deadline=deadline,
                             save_checkpoints=save_checkpoints, progress=progress,
                             execution=execution)


def _resume_advice(workdir: str | pathlib.Path) -> str:
  step = latest_step(workdir)
  where = f"the last checkpoint is step {step}" if step else "no checkpoint was written yet"
  return f"{where}; relaunch every process with the same command to resume"


def _train_population(base: ml_collections.ConfigDict, members: Sequence[Member],
                      workdir: str | pathlib.Path, *, data_on_device: bool = True,
                      member_devices: int | None = None,
                      dataset: GroundTruthDataset | None = None,
                      on_non_finite: str = "stop", deadline: float | None = None,
                      save_checkpoints: bool = True, progress: bool = False,
                      execution: str = "auto"
                      ) -> tuple[train_lib.TrainState, jax.Array]:
  """``train_population`` inside its heartbeat."""
  from betatc_jax.logging_utils import MetricWriter, ProgressBar

  if on_non_finite not in NON_FINITE_POLICIES:
    raise ValueError(f"on_non_finite must be one of {NON_FINITE_POLICIES}, got "
                     f"{on_non_finite!r}.")
  freeze = on_non_finite == "freeze"
  mode = stepping.resolve_mode(execution)
  configs = validate_population(base, members)
  dataset = dataset if dataset is not None else train_lib.dataset_from_config(base)
  train_lib.check_holds_a_batch(dataset, base.batch_size)
  if mode == "sequential":       # every member's own step, data-parallel over every device
    mesh = sharding.make_mesh()
    sharding.check_batch_size(base.batch_size, mesh)
    by_member = sharding.replicated(mesh)
  else:
    mesh = make_mesh(len(members), base.batch_size, member_devices)
    by_member = member_sharding(mesh)
  num_members = len(members)
  workdir = pathlib.Path(workdir)
  record = _population_record(base, members)
  record_path = workdir / "population.json"
  if record_path.is_file():
    saved = json.loads(record_path.read_text())
    if saved["members"] != record["members"]:
      raise ValueError(f"{workdir} holds another population (different members); use a new "
                       "workdir.")
  processes.barrier("betatc_jax population: checked")   # no process writes before all read
  workdir.mkdir(parents=True, exist_ok=True)

  # This process's members: all of them in one process (and in sequential mode).
  held = list(range(num_members)) if mode == "sequential" else held_members(mesh, num_members)
  states, keys = create_population_state([configs[k] for k in held], dataset.observation_shape,
                                         len(dataset))
  states = processes.to_global(jax.device_get(states), by_member, num_members)
  keys = jax.jit(jax.random.wrap_key_data, out_shardings=by_member)(
      processes.to_global(jax.device_get(jax.random.key_data(keys)), by_member, num_members))
  manager = checkpointing.make_manager(workdir, base.keep_checkpoints)
  restored_step, states, keys = train_lib.restore_state(manager, states, keys)
  start_step = restored_step or 0
  if jax.process_index() == 0:
    record_path.write_text(json.dumps(record, indent=2))
  frozen = frozen_members(workdir) if restored_step else {}
  all_names = [m.name for m in members]
  members, configs = [members[k] for k in held], [configs[k] for k in held]
  for member, config in zip(members, configs):
    directory = member_dir(workdir, member.name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config.to_json(indent=2))
    if member.name not in frozen:
      (directory / FROZEN_FILE).unlink(missing_ok=True)
      train_lib.truncate_metrics(directory / "metrics.jsonl", start_step)
  live_host = np.asarray([m.name not in frozen for m in members])

  executor = stepping.make_executor(mode, mesh, states, keys, dataset, live_host, freeze=freeze,
                                    data_on_device=data_on_device)
  del states, keys              # the executor holds them (in its own layout)

  writers = [MetricWriter(member_dir(workdir, m.name)) for m in members]
  bar = ProgressBar(start_step, base.num_train_steps, enabled=progress and processes.is_chief(),
                    desc=f"{num_members} members")
  seeds = [c.seed for c in configs]
  total, batch_size = base.num_train_steps, base.batch_size
  boundaries = sorted({s for s in range(start_step + 1, total + 1)
                       if s % base.log_every_steps == 0 or s % base.checkpoint_every_steps == 0}
                      | {total})
  last_saved = restored_step
  step = start_step
  unlogged: list[list[dict[str, Any]]] = [[] for _ in members]   # rows since each one's last row

  def save(step):
    if save_checkpoints:
      checkpointing.save(manager, step, train_lib.checkpoint_tree(*executor.stacked()))
    return step if save_checkpoints else last_saved

  try:
    def interval_indices(i):
      if i >= len(boundaries):
        return None
      first = boundaries[i - 1] if i else start_step
      return member_batch_indices(seeds, first, boundaries[i] - first, batch_size,
                                  len(dataset))                 # [S, K_here, B]

    upcoming = interval_indices(0) if start_step < total else None
    for i, boundary in enumerate(boundaries if start_step < total else []):
      t0 = time.perf_counter()
      num = boundary - step
      first = step
      pending = executor.run(upcoming, live_host,
                             lambda metrics, offset: bar_tick(bar, metrics, first + offset + 1))
      # The steps are dispatched, not done: the next interval's indices are
      # computed while the device works, so it never waits on them.
      upcoming = interval_indices(i + 1)
      host = executor.host_rows(pending)
      elapsed = time.perf_counter() - t0
      step = boundary
      bar.move_to(step)
      stop = None                                  # (global member index, step, message)
      for k, (member, writer) in enumerate(zip(members, writers)):
        if not live_host[k]:
          continue
        rows = [{name: value[k] for name, value in m.items()} for m in host]
        bad = (next((j for j, r in enumerate(rows) if r["live"] < 1.0), None) if freeze
               else train_lib.first_non_finite(rows))
        if bad is not None and not freeze:
          stop = (held[k], step - num + bad + 1, train_lib.non_finite_message(
              rows[bad], step - num + bad + 1, last_saved, manager.directory,
              who=f" of member {member.name!r}"))
          break
        if bad is not None:
          live_host[k] = False
          diverged = step - num + bad + 1
          info = {"diverged_at_step": diverged, "kept_step": diverged - 1,
                  "loss": float(rows[bad]["loss"]), "grad_norm": float(rows[bad]["grad_norm"])}
          (member_dir(workdir, member.name) / FROZEN_FILE).write_text(json.dumps(info))
          print(f"member {member.name!r}: non-finite at step {diverged} (loss={info['loss']}, "
                f"grad_norm={info['grad_norm']}); frozen at its state of step {diverged - 1}",
                flush=True)
          rows = rows[:bad]
        unlogged[k] += rows        # a row averages every step since the last row
        if unlogged[k] and (bad is not None or step % base.log_every_steps == 0 or step == total):
          row = train_lib.mean_row(unlogged[k])
          row.update(step=step - num + len(rows), steps_per_sec=num / elapsed,
                     images_per_sec=num * batch_size / elapsed,
                     population_images_per_sec=num * batch_size * num_members / elapsed)
          writer.write(row)
          unlogged[k] = []
      following = boundaries[i + 1] - step if i + 1 < len(boundaries) else 0
      late = (deadline is not None and following
              and time.time() + elapsed / num * following > deadline)
      # The processes agree on what ends the loop (process 0's clock for
      # the deadline), so none waits in a step the others skip.
      flags = processes.all_gather_ints([stop[0] if stop else -1, stop[1] if stop else 0,
                                         int(live_host.any()), int(bool(late))])
      stopped = next((row for row in flags if row[0] >= 0), None)
      if stopped is not None:
        manager.wait_until_finished()
        raise NonFiniteLossError(stop[2] if stop else (
            f"member {all_names[stopped[0]]!r} (another process) became non-finite at step "
            f"{stopped[1]}; every process stopped. {_resume_advice(workdir)}."))
      if step % base.checkpoint_every_steps == 0 or step == total:
        last_saved = save(step)
      if not flags[:, 2].any():
        print(f"every member is frozen; stopping at step {step} of {total}", flush=True)
        break
      if flags[0, 3]:
        print(f"deadline: stopping at step {step} of {total} (the next {following} steps "
              f"would end {time.time() + elapsed / num * following - deadline:.0f} s past it)",
              flush=True)
        if last_saved != step:
          last_saved = save(step)
        break
  finally:
    bar.close()
    for writer in writers:
      writer.close()
    manager.wait_until_finished()
  return executor.stacked()


def bar_tick(bar, metrics: dict[str, jax.Array], step: int) -> None:
  """Moves ``bar`` to ``step`` when it is due, after waiting for that step."""
  if bar.due():
    jax.block_until_ready(metrics["loss"])
    bar.move_to(step)


# ------------------------------------------------------------------ members as runs

def export_members(workdir: str | pathlib.Path, states: train_lib.TrainState, keys: jax.Array,
                   members: Sequence[Member], keep: int = 1) -> list[pathlib.Path]:
  """Writes each member's state as an ordinary single-run checkpoint in
  ``workdir/members/<name>/checkpoints/<step>`` (keeping ``keep``). In a run
  of several processes each process writes the members it holds
  (``held_rows_of``), and all return once every member is written.

  Returns:
    The workdirs of the members this process wrote (all, in one process).
  """
  host = processes.local_tree(train_lib.checkpoint_tree(states, keys))
  runs = [(member_dir(workdir, members[k].name), int(host["step"][i]),
           unstack(host, i)) for i, k in enumerate(held_rows_of(states))]
  checkpointing.save_runs(runs, keep)
  processes.barrier("export_members")
  return [directory for directory, _, _ in runs]


def held_rows_of(states: train_lib.TrainState) -> list[int]:
  """The members (indices) of stacked ``states`` whose rows this process holds."""
  step = states.step
  if not isinstance(step, jax.Array):
    return list(range(len(step)))
  return processes.held_rows(step.sharding, step.shape[0])


def local_states(states: train_lib.TrainState) -> train_lib.TrainState:
  """The rows of ``states`` this process holds (``held_rows_of``), on the host."""
  return processes.local_tree(states)


def evaluate_member(config: ml_collections.ConfigDict, name: str, params: Any, step: int,
                    dataset: GroundTruthDataset, *, frozen: Mapping[str, Any] | None = None,
                    workdir: str | pathlib.Path | None = None, other_metrics: bool = False,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """``evaluate.evaluate_params`` of one member, with ``name`` and
  ``frozen_at_step`` (the step at which ``"freeze"`` froze it, else None)
  added. A frozen member whose kept state cannot be evaluated (its codes are
  not finite) gets ``eval_error`` instead of metrics; any other error
  propagates.

  Args:
    config: the member's config (``member_config``).
    name: the member's name.
    params: its parameters (one member's, unstacked).
    step: its true step count.
    dataset: the dataset to evaluate on.
    frozen: its ``frozen.json`` record, if it was frozen.
    workdir: where its eval.json and plots go (None: nowhere).
    other_metrics: also the metrics other than MIG and the ELBO terms.
    extra: entries to add to the result (and its eval.json).
  """
  marks = {"name": name, "frozen_at_step": frozen["diverged_at_step"] if frozen else None}
  try:
    result = evaluate.evaluate_params(config, params, dataset, step=step, workdir=workdir,
                                      other_metrics=other_metrics, extra=dict(extra or {}))
  except ValueError as e:
    if not frozen:
      raise
    return {"step": step, "eval_error": str(e), **marks, **(extra or {})}
  return dict(result, **marks)


def evaluate_members(base: ml_collections.ConfigDict, members: Sequence[Member],
                     states: train_lib.TrainState, dataset: GroundTruthDataset, *,
                     workdir: str | pathlib.Path | None = None, other_metrics: bool = False,
                     frozen: Mapping[str, Mapping[str, Any]] | None = None,
                     progress: bool = False,
                     udr_groups: Sequence[Sequence[str]] | None = None,
                     extras: Sequence[Mapping[str, Any]] | None = None
                     ) -> list[dict[str, Any]]:
  """``evaluate_member`` of every member, one after another (the encoder is
  compiled once for all; MIG's estimator dominates and does not batch over
  members), with each member's UDR within its group. With ``workdir``, each
  member's eval.json and plots go to its member workdir.

  Args:
    frozen: ``frozen_members`` of the population (None: none frozen).
    progress: a bar over the members.
    udr_groups: names of the members compared with each other by UDR
      (``evaluate.udr_of_runs``: ``udr``, Lasso, and ``udr_spearman``), e.g.
      the seeds of one method and β; None: all the members as one group;
      ``()``: no UDR. A member in no group of two or more gets None.
    extras: per member, entries to add to its result and eval.json.

  Returns:
    One result per member, in order.
  """
  import tqdm
  configs = validate_population(base, members)
  params = jax.device_get(states.params)
  frozen = frozen or {}
  udr_scores = member_udr(configs, members, params, dataset, udr_groups)
  extras = extras or [{}] * len(members)
  results = []
  for k, (member, config) in enumerate(tqdm.tqdm(list(zip(members, configs)), unit="member",
                                                 desc="evaluating", disable=not progress,
                                                 dynamic_ncols=True)):
    results.append(evaluate_member(
        config, member.name, unstack(params, k), int(states.step[k]), dataset,
        frozen=frozen.get(member.name),
        workdir=member_dir(workdir, member.name) if workdir is not None else None,
        other_metrics=other_metrics, extra={**udr_scores[k], **extras[k]}))
  return results


def member_udr(configs: Sequence[ml_collections.ConfigDict], members: Sequence[Member],
               params: Any, dataset: GroundTruthDataset,
               groups: Sequence[Sequence[str]] | None = None) -> list[dict[str, float | None]]:
  """Each member's ``udr`` and ``udr_spearman`` within its group
  (``evaluate_members``); stacked host ``params`` [K]."""
  index = {m.name: k for k, m in enumerate(members)}
  groups = [[m.name for m in members]] if groups is None else groups
  scores: list[dict[str, float | None]] = [
      {"udr": None, "udr_spearman": None} if groups else {} for _ in members]
  for group in groups:
    rows = [index[name] for name in group if name in index]
    if len(rows) < 2:
      continue
    found = evaluate.udr_of_runs([configs[k] for k in rows], [unstack(params, k) for k in rows],
                                 dataset)
    for i, k in enumerate(rows):
      scores[k] = {name: (None if np.isnan(v[i]) else float(v[i])) for name, v in found.items()}
  return scores
