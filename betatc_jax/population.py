"""Populations: K independent runs trained together as one program, then
exported and evaluated as ordinary runs.

A population is a base config plus K members (``members.Member``), each of
which overrides only ``members.MEMBER_KEYS`` (seed, learning rate,
objective, α, β, γ, warm-up, estimator); architecture, latent size, batch
size, dataset and step count are shared. ``train_population`` trains them
with the one training loop (``betatc_jax.loop``): on a CPU each member's own
step in turn, on an accelerator one vmapped step for all
(``betatc_jax.execution``). Member i is the single run of its config
(``members.member_config``): the same initialisation, noise and batches, so
``train.py`` of that config reproduces it.

Divergence (``on_non_finite``): ``"stop"`` (the default, as ``train.py``)
raises at the first non-finite loss or gradient of any member, keeping the
last good checkpoint. ``"freeze"`` keeps a diverged member's last finite
state inside its compiled step while the others train on; the checkpoint's
records hold which members froze (``members/<name>/frozen.json`` is a
copy), so a resumed population keeps them frozen and a report can mark
their rows. ``deadline`` stops at a boundary, each member's ``step`` its
true count.

Several processes: a ('member', 'data') mesh over every device of every
process (the vmapped mode); each process holds K / P whole members and
initialises, feeds, logs and checkpoints them, and ``export_members`` writes
the members it holds. The workdir layout is in ``betatc_jax.workdir``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from betatc_jax import checkpointing, evaluate, loop, mesh, state, workdir as wd
from betatc_jax.data import check_holds_a_batch, dataset_from_config
from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.members import Member, validate_population


def train_population(base: ml_collections.ConfigDict, members: Sequence[Member],
                     workdir: str | pathlib.Path, *, data_on_device: bool = True,
                     member_devices: int | None = None,
                     dataset: GroundTruthDataset | None = None,
                     on_non_finite: str = "stop", deadline: float | None = None,
                     save_checkpoints: bool = True, progress: bool = False,
                     execution: str = "auto"
                     ) -> tuple[state.TrainState, jax.Array]:
  """Trains every member to ``base.num_train_steps`` together, resuming from
  ``workdir/checkpoints``; each member's metrics.jsonl and TensorBoard events
  go to ``workdir/members/<name>``.

  Several processes (``base.distributed.*``, or ``JAX_COORDINATOR_ADDRESS``):
  every process calls this with the same arguments; each holds, initialises,
  feeds, logs and checkpoints only its own members. ``workdir`` must be on a
  filesystem every process sees.

  Args:
    base: the shared config (``num_train_steps``, logging and checkpoint
      intervals, model, data, batch size).
    members: the runs; see ``members.Member``.
    workdir: the population workdir (``betatc_jax.workdir``).
    data_on_device: vmapped: keep the dataset on the accelerator (False:
      gather each batch on the host).
    member_devices: vmapped: devices along the mesh's 'member' axis.
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
      on a CPU in one process, else vmap); ``betatc_jax.execution``.

  Returns:
    (stacked states, step keys [K]) at ``base.num_train_steps``, or at the
    boundary where the deadline stopped the loop; a frozen member's state is
    that of its ``kept_step``.

  Raises:
    ValueError: for an invalid population, policy or execution mode, before
      any work; also when ``workdir`` holds a different population.
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
    loop.NonFiniteLossError: with ``"stop"``, a member's loss went
      non-finite; the message names the member and the step.
    loop.TrainingInterrupted: SIGINT or SIGTERM, after a checkpoint.
    mesh.LostProcessError: another process stopped; the message names it and
      the last checkpoint, from which a relaunch resumes.
  """
  mesh.initialize_from_config(base)
  configs = validate_population(base, members)
  dataset = dataset if dataset is not None else dataset_from_config(base)
  check_holds_a_batch(dataset, base.batch_size)
  workdir = pathlib.Path(workdir)
  record = wd.population_record(base, members)
  wd.check_population(workdir, record)

  def on_start(run):
    if mesh.is_chief():
      (workdir / "population.json").write_text(json.dumps(record, indent=2))
    for k, directory in zip(run.members, run.dirs):
      (directory / "config.json").write_text(configs[k].to_json(indent=2))

  spec = loop.Spec(base=base, configs=configs, names=[m.name for m in members],
                   dirs=[wd.member_dir(workdir, m.name) for m in members], workdir=workdir,
                   single=False, dataset=dataset, execution=execution,
                   data_on_device=data_on_device, member_devices=member_devices,
                   on_non_finite=on_non_finite, deadline=deadline,
                   save_checkpoints=save_checkpoints, progress=progress,
                   desc=f"{len(members)} members", on_start=on_start)
  return loop.train(spec)


# ------------------------------------------------------------------ members as runs

def export_members(workdir: str | pathlib.Path, states: state.TrainState, keys: jax.Array,
                   members: Sequence[Member], keep: int = 1) -> list[pathlib.Path]:
  """Writes each member's state as an ordinary single-run checkpoint in
  ``workdir/members/<name>/checkpoints/<step>`` (keeping ``keep``). In a run
  of several processes each process writes the members it holds
  (``held_rows_of``), and all return once every member is written.

  Returns:
    The workdirs of the members this process wrote (all, in one process).
  """
  host = mesh.local_tree(state.checkpoint_tree(states, keys))
  runs = [(wd.member_dir(workdir, members[k].name), int(host["step"][i]),
           state.unstack(host, i)) for i, k in enumerate(held_rows_of(states))]
  checkpointing.save_runs(runs, keep)
  mesh.barrier("export_members")
  return [directory for directory, _, _ in runs]


def held_rows_of(states: state.TrainState) -> list[int]:
  """The members (indices) of stacked ``states`` whose rows this process holds."""
  step = states.step
  if not isinstance(step, jax.Array):
    return list(range(len(step)))
  return mesh.held_rows(step.sharding, step.shape[0])


def local_states(states: state.TrainState) -> state.TrainState:
  """The rows of ``states`` this process holds (``held_rows_of``), on the host."""
  return mesh.local_tree(states)


def evaluate_member(config: ml_collections.ConfigDict, name: str, params: Any, step: int,
                    dataset: GroundTruthDataset, *, frozen: Mapping[str, Any] | None = None,
                    workdir: str | pathlib.Path | None = None,
                    other_metrics: bool | Sequence[str] = False,
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
    other_metrics: also the metrics other than MIG and the ELBO terms (a
      sequence: those of ``metrics.suite.OTHER_METRIC_GROUPS`` it names).
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
                     states: state.TrainState, dataset: GroundTruthDataset, *,
                     workdir: str | pathlib.Path | None = None,
                     other_metrics: bool | Sequence[str] = False,
                     frozen: Mapping[str, Mapping[str, Any]] | None = None,
                     progress: bool = False,
                     udr_groups: Sequence[Sequence[str]] | None = None,
                     extras: Sequence[Mapping[str, Any]] | None = None,
                     on_result: Callable[[int, dict[str, Any]], None] | None = None
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
    on_result: called as ``on_result(k, result)`` as soon as member k is
      evaluated (e.g. to write it, so a crash loses only the member in hand).

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
        config, member.name, state.unstack(params, k), int(states.step[k]), dataset,
        frozen=frozen.get(member.name),
        workdir=wd.member_dir(workdir, member.name) if workdir is not None else None,
        other_metrics=other_metrics, extra={**udr_scores[k], **extras[k]}))
    if on_result is not None:
      on_result(k, results[-1])
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
    found = evaluate.udr_of_runs([configs[k] for k in rows],
                                 [state.unstack(params, k) for k in rows], dataset)
    for i, k in enumerate(rows):
      scores[k] = {name: (None if np.isnan(v[i]) else float(v[i])) for name, v in found.items()}
  return scores
