"""The training loop: one loop for a single run and for a population.

A single run is a population of one: the same loop over the members'
states, its one member stepped by the single run's own jitted step
(``execution.Sequential``), so its numbers are the plain step's, bit for
bit. ``train`` builds the states (restoring the latest checkpoint and its
records), then repeats until the last step:

1. dispatch the steps up to the next boundary (a multiple of
   ``log_every_steps`` or ``checkpoint_every_steps``, or the last step),
   ending early on Ctrl-C;
2. bring their metrics to the host and hand them to the hooks
   (``betatc_jax.hooks``): non-finite, metrics, progress, deadline;
3. let the processes agree on what ends the loop (a non-finite member, every
   member frozen, the deadline, an interrupt), so none waits in a step the
   others skip; checkpoint.

Several processes: every process calls ``train`` with the same arguments; a
lost process ends the others with ``mesh.LostProcessError``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from betatc_jax import checkpointing, execution, hooks, mesh, members, state, workdir as wd
from betatc_jax.data.ground_truth import GroundTruthDataset

NON_FINITE_POLICIES = ("stop", "freeze")


class NonFiniteLossError(FloatingPointError):
  """A loss or gradients became NaN/inf; the run stopped, its last good
  checkpoint kept."""


class TrainingInterrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM: a checkpoint of ``step`` was saved; rerun to resume."""

  def __init__(self, step: int, workdir: str | pathlib.Path):
    super().__init__(f"interrupted at step {step}; rerun the same command to resume "
                     f"(workdir {workdir})")
    self.step = step


@dataclasses.dataclass
class Spec:
  """What ``train`` trains and where.

  Attributes:
    base: the shared config (steps, intervals, batch size, checkpoints).
    configs: every member's config, in order (one for a single run).
    names: every member's name; dirs: where each one's metrics go.
    workdir: where the checkpoints go.
    single: a single run: its checkpoint holds one run's state, not a
      stack, and its errors do not name a member.
    dataset: the training set.
    execution: ``execution.EXECUTION_MODES``.
    data_on_device, member_devices: for the vmapped mode.
    on_non_finite: ``NON_FINITE_POLICIES``.
    deadline: a ``time.time()`` by which the loop returns (None: none).
    save_checkpoints: False writes no checkpoint.
    progress: a bar on process 0; desc and tc_label label it.
    on_start: called once the states are restored, before the first step
      (the run's own files: config, messages).
  """
  base: ml_collections.ConfigDict
  configs: list[ml_collections.ConfigDict]
  names: list[str]
  dirs: list[pathlib.Path]
  workdir: pathlib.Path
  single: bool
  dataset: GroundTruthDataset
  execution: str = "auto"
  data_on_device: bool = True
  member_devices: int | None = None
  on_non_finite: str = "stop"
  deadline: float | None = None
  save_checkpoints: bool = True
  progress: bool = False
  desc: str | None = None
  tc_label: str = "tc"
  on_start: Callable[[hooks.Run], None] | None = None


def _layout(spec: Spec, mode: str) -> tuple[Any, Any, list[int]]:
  """(mesh, the sharding of a leading member axis, this process's members)."""
  if mode == "sequential":
    data = mesh.data_mesh()
    mesh.check_batch_size(spec.base.batch_size, data)
    return data, mesh.replicated(data), list(range(len(spec.names)))
  members_mesh = mesh.member_mesh(len(spec.names), spec.base.batch_size, spec.member_devices)
  by_member = mesh.member_sharding(members_mesh)
  return members_mesh, by_member, mesh.held_rows(by_member, len(spec.names))


def _fresh(spec: Spec, by_member: Any, held: list[int]) -> tuple[Any, Any]:
  """The members' initial states and keys, stacked [K] as global arrays
  (this process builds the members it holds)."""
  size = len(spec.names)
  states, keys = state.create_population_state([spec.configs[k] for k in held],
                                               spec.dataset.observation_shape, len(spec.dataset))
  states = mesh.to_global(jax.device_get(states), by_member, size)
  keys = jax.jit(jax.random.wrap_key_data, out_shardings=by_member)(
      mesh.to_global(jax.device_get(jax.random.key_data(keys)), by_member, size))
  return states, keys


def _abstract(spec: Spec, by_member: Any, held: list[int]) -> tuple[Any, Any]:
  """The shapes, dtypes and shardings of the stacked states and key data
  [K], computed without building them. Nothing is written: a model that
  does not fit the data fails here, before the workdir is touched."""
  configs = [spec.configs[k] for k in held]

  def build():
    states, keys = state.create_population_state(configs, spec.dataset.observation_shape,
                                                 len(spec.dataset))
    return states, jax.random.key_data(keys)

  size = len(spec.names)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct((size,) + s.shape[1:], s.dtype,
                                                     sharding=by_member), jax.eval_shape(build))


def _restore(spec: Spec, manager: Any, by_member: Any, held: list[int], abstract: Any
             ) -> tuple[Any, Any, int | None, dict[str, Any]]:
  """(states, keys, restored step, records) from the latest checkpoint (a
  single run's holds one run's state, a population's the stack), restored
  straight into their layout (``abstract``, ``_abstract``'s); fresh states
  and (None, {}) when there is none."""
  states, key_data = abstract
  if manager.latest_step() is None:
    return (*_fresh(spec, by_member, held), None, {})
  settings = [state.hyperparameters(spec.configs[k], len(spec.dataset)) for k in held]
  if not spec.single:
    step, states, keys, records = state.restore_state(manager, states, key_data)
    stacked = mesh.to_global(jax.device_get(state.stack(settings)), by_member, len(spec.names))
    return states.replace(**stacked), keys, step, records
  one = lambda tree: jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype, sharding=by_member), tree)
  step, single, key, records = state.restore_state(manager, one(states), one(key_data))
  stack = jax.jit(lambda tree: state.stack([tree]), out_shardings=by_member)
  return stack(single.replace(**settings[0])), stack(key), step, records


def _tree_of(spec: Spec, executor: Any):
  """The checkpoint tree of the executor's states, as the layout wants."""
  def tree():
    states, keys = executor.stacked()
    if spec.single:
      return state.checkpoint_tree(state.unstack(states, 0), keys[0])
    return state.checkpoint_tree(states, keys)
  return tree


def train(spec: Spec) -> tuple[state.TrainState, jax.Array]:
  """Trains every member to ``spec.base.num_train_steps`` (resuming from
  ``spec.workdir/checkpoints``), or to the boundary where the deadline, every
  member frozen or an interrupt stopped it.

  Returns:
    (stacked states, keys [K]); a frozen member's state is that of its
    ``kept_step``.

  Raises:
    ValueError: a bad policy or execution mode, before any work.
    checkpointing.CheckpointError: a checkpoint that cannot be restored.
    NonFiniteLossError: under "stop", a loss went non-finite.
    TrainingInterrupted: SIGINT or SIGTERM, after the checkpoint.
    mesh.LostProcessError: another process stopped.
  """
  if spec.on_non_finite not in NON_FINITE_POLICIES:
    raise ValueError(f"on_non_finite must be one of {NON_FINITE_POLICIES}, got "
                     f"{spec.on_non_finite!r}.")
  mode = execution.resolve_mode(spec.execution)
  mesh_, by_member, held = _layout(spec, mode)
  with mesh.Heartbeat(spec.workdir) as heartbeat, mesh.lost_process_errors(
      heartbeat, lambda: _resume_advice(spec.workdir)):
    mesh.barrier("betatc_jax: workdir checked")    # no process writes before all have read
    return _train(spec, mode, mesh_, by_member, held)


def _resume_advice(workdir: pathlib.Path) -> str:
  step = wd.latest_step(workdir)
  where = f"the last checkpoint is step {step}" if step else "no checkpoint was written yet"
  return f"{where}; relaunch every process with the same command to resume"


def _train(spec: Spec, mode: str, mesh_: Any, by_member: Any, held: list[int]
           ) -> tuple[state.TrainState, jax.Array]:
  base = spec.base
  abstract = _abstract(spec, by_member, held)    # shape errors before the workdir is touched
  manager = checkpointing.make_manager(spec.workdir, base.keep_checkpoints,
                                       every=base.checkpoint_every_steps)
  states, keys, restored, records = _restore(spec, manager, by_member, held, abstract)
  frozen = dict(records.get("frozen", {}))
  run = hooks.Run(names=[spec.names[k] for k in held], dirs=[spec.dirs[k] for k in held],
                  members=held, total=base.num_train_steps, step=restored or 0,
                  batch_size=base.batch_size,
                  live=np.asarray([spec.names[k] not in frozen for k in held]),
                  frozen=frozen, last_saved=restored)
  _prepare_dirs(run)
  if spec.on_start is not None:
    spec.on_start(run)
  executor = execution.make_executor(mode, mesh_, states, keys, spec.dataset, run.live,
                                     freeze=spec.on_non_finite == "freeze",
                                     data_on_device=spec.data_on_device)
  del states, keys            # the executor holds them, in its own layout
  chief = mesh.is_chief()
  kit = _Hooks(
      non_finite=hooks.NonFinite(spec.on_non_finite, manager.directory, spec.single),
      metrics=hooks.Metrics(run, base.log_every_steps, records.get("unlogged", {}),
                            len(spec.names), enabled=chief or not spec.single),
      progress=hooks.Progress(run.step, run.total, spec.progress and chief, spec.desc,
                              spec.tc_label),
      deadline=hooks.Deadline(spec.deadline), interrupt=hooks.Interrupt(),
      checkpoints=hooks.Checkpoints(manager, _tree_of(spec, executor), spec.save_checkpoints))
  try:
    _loop(spec, run, executor, kit)
  finally:
    kit.close()
  return executor.stacked()


def _prepare_dirs(run: hooks.Run) -> None:
  """Member folders as the restored checkpoint left them: rows after it
  dropped, ``frozen.json`` as its records say."""
  for name, directory in zip(run.names, run.dirs):
    directory.mkdir(parents=True, exist_ok=True)
    wd.truncate_metrics(directory / "metrics.jsonl", run.step)
  wd.write_frozen(dict(zip(run.names, run.dirs)), run.frozen)


@dataclasses.dataclass
class _Hooks:
  non_finite: hooks.NonFinite
  metrics: hooks.Metrics
  progress: hooks.Progress
  deadline: hooks.Deadline
  interrupt: hooks.Interrupt
  checkpoints: hooks.Checkpoints

  def close(self) -> None:
    self.interrupt.close()
    self.progress.close()
    self.metrics.close()
    self.checkpoints.close()


def _loop(spec: Spec, run: hooks.Run, executor: Any, kit: _Hooks) -> None:
  """The loop of the module docstring, from ``run.step`` on."""
  ends = hooks.boundaries(run.step, run.total, (spec.base.log_every_steps,
                                                spec.base.checkpoint_every_steps))
  seeds = [spec.configs[k].seed for k in run.members]
  one_process = jax.process_count() == 1
  while run.step < run.total:
    end = next(b for b in ends if b > run.step)
    indices = members.member_batch_indices(seeds, run.step, end - run.step,
                                           spec.base.batch_size, len(spec.dataset))
    first, t0 = run.step, time.perf_counter()
    pending = executor.run(indices, run.live,
                           lambda m, offset: kit.progress.tick(m, first + offset + 1),
                           stop=lambda: one_process and kit.interrupt.raised)
    rows = executor.host_rows(pending)
    interval = hooks.Interval(first, rows, time.perf_counter() - t0,
                              kept=[len(rows)] * len(run.names))
    kit.non_finite.interval(run, interval)
    following = next((b for b in ends if b > interval.last), interval.last) - interval.last
    kit.deadline.interval(run, interval, following)
    run.interrupted = kit.interrupt.raised
    stopping = _agree(run, spec, interval.last)   # raises on a non-finite stop, everywhere
    run.step = interval.last
    kit.metrics.interval(run, interval)
    kit.progress.interval(run, interval)
    if run.interrupted:
      kit.checkpoints.save(run, kit.metrics, force=True)
      kit.checkpoints.close()
      raise TrainingInterrupted(run.step, spec.workdir)
    kit.checkpoints.save(run, kit.metrics, force=stopping or run.step == run.total)
    if stopping:
      break


def _agree(run: hooks.Run, spec: Spec, step: int) -> bool:
  """The processes' common decision: a non-finite stop (raised in every
  process), an interrupt (``run.interrupted`` set in every process), or
  whether the loop ends here (every member frozen, the deadline)."""
  error = run.error or (-1, 0, "")
  flags = mesh.all_gather_ints([error[0], error[1], int(run.live.any()), int(run.late),
                                int(run.interrupted)])
  stopped = next((row for row in flags if row[0] >= 0), None)
  if stopped is not None:
    raise NonFiniteLossError(run.error[2] if run.error else (
        f"member {spec.names[stopped[0]]!r} (another process) became non-finite at step "
        f"{stopped[1]}; every process stopped. {_resume_advice(spec.workdir)}."))
  run.interrupted = bool(flags[:, 4].any())
  if not run.interrupted and not flags[:, 2].any():
    print(f"every member is frozen; stopping at step {step} of {run.total}", flush=True)
    return True
  return bool(flags[0, 3])
