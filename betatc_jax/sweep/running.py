"""Training and evaluating a sweep's populations, milestone by milestone.

Each population trains to each milestone (every ``eval_steps`` and
``steps``) in turn, freezing a run whose loss goes non-finite, and every run
is evaluated there: MIG (shape excluded and included), the ELBO
decomposition, UDR among the seeds of its method and value, and at
``steps`` the other metrics. Each evaluation is written to
``<run>/evals/step_<N>.json`` as it finishes; a rerun skips what is done.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from betatc_jax import mesh, population, state, workdir as wd
from betatc_jax.data import dataset_from_config
from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.members import Member, validate_population
from betatc_jax.sweep import grid


def eval_path(run_dir: pathlib.Path, step: int) -> pathlib.Path:
  return run_dir / "evals" / f"step_{step:06d}.json"


def train_and_evaluate(c: ml_collections.ConfigDict) -> None:
  """Every population of the grid to every milestone, evaluated there."""
  dataset = dataset_from_config(grid.population_base(c, c.steps))
  run_of = {grid.run_name(*run): run for run in grid.runs(c)}
  for root, members in grid.members_of(c).items():
    for step in grid.milestones(c):
      _milestone(c, root, members, run_of, dataset, step)


def _todo(c: ml_collections.ConfigDict, root: pathlib.Path, members: list[Member],
          step: int) -> tuple[list[Member], bool]:
  """(the runs not yet evaluated at ``step``, whether an export is due)."""
  todo = [m for m in members if not eval_path(wd.member_dir(root, m.name), step).is_file()]
  unexported = step == c.steps and c.export and not all(
      (wd.member_dir(root, m.name) / "checkpoints" / str(step)).is_dir() for m in members)
  return todo, unexported


def _milestone(c: ml_collections.ConfigDict, root: pathlib.Path, members: list[Member],
               run_of: Mapping[str, tuple[str, float, int]], dataset: GroundTruthDataset,
               step: int) -> None:
  """One population trained to ``step`` (resumed), exported at the last
  milestone, and its runs evaluated there."""
  todo, unexported = _todo(c, root, members, step)
  if not todo and not unexported:
    return
  if wd.latest_step(root) > step:
    print(f"  population already past step {step} (checkpoint {wd.latest_step(root)}); not "
          "evaluated there", flush=True)
    return
  timing = _Timing(root)
  config = grid.population_base(c, step, run_of[members[0].name][0])
  print(f"population {root} ({len(members)} runs): training to step {step}", flush=True)
  t0 = time.perf_counter()
  states, keys = population.train_population(config, members, root, dataset=dataset,
                                             data_on_device=not c.host_data,
                                             on_non_finite="freeze", progress=True)
  train_seconds = timing.before(step) + time.perf_counter() - t0
  if step == c.steps and c.export:        # each process writes the runs it holds
    population.export_members(root, states, keys, members)
  t0 = time.perf_counter()
  evaluated = _evaluate(c, root, config, members, todo, states, run_of, dataset, step,
                        train_seconds) if todo else 0
  timing.record(c, step, train_seconds, time.perf_counter() - t0, len(members), evaluated)


def _evaluate(c: ml_collections.ConfigDict, root: pathlib.Path, config: ml_collections.ConfigDict,
              members: list[Member], todo: list[Member], states: state.TrainState,
              run_of: Mapping[str, tuple[str, float, int]], dataset: GroundTruthDataset,
              step: int, train_seconds: float) -> int:
  """Evaluates the runs of ``todo`` this process holds, with each one's UDR
  among the seeds of its method and value; returns how many."""
  held = population.held_rows_of(states)
  local = [members[k] for k in held]
  here = {m.name: i for i, m in enumerate(local)}
  todo = [m for m in todo if m.name in here]
  local_states = population.local_states(states)
  udr = population.member_udr(validate_population(config, local), local, local_states.params,
                              dataset, grid.udr_groups([m.name for m in local], run_of))
  udr_of = {m.name: u for m, u in zip(local, udr)}
  final = step == c.steps
  started = [time.perf_counter()]

  def write(k: int, result: dict[str, Any]) -> None:       # each run as it is done
    member, now = todo[k], time.perf_counter()
    method, value, seed = run_of[member.name]
    result.update(method=method, value=value, seed=seed, train_seconds=train_seconds,
                  eval_seconds=now - started[0])
    started[0] = now
    _write_json(eval_path(wd.member_dir(root, member.name), step), result)
    print(f"  {member.name} step {step}: " + _summary(result), flush=True)

  population.evaluate_members(
      config, todo, state.unstack(local_states, np.asarray([here[m.name] for m in todo],
                                                           np.int32)),
      dataset, workdir=root if final else None,
      other_metrics=grid.final_metrics(c) if final else (),
      frozen=wd.frozen_members(root), progress=mesh.is_chief(), udr_groups=(),
      extras=[udr_of[m.name] for m in todo], on_result=write)
  return len(todo)


def _summary(result: Mapping[str, Any]) -> str:
  if "eval_error" in result:
    return f"frozen at step {result['frozen_at_step']}, not evaluated ({result['eval_error']})"
  return (f"MIG {result['mig']:.3f} (with shape {result['mig_with_shape']:.3f}) TC "
          f"{result['tc']:.2f} log p(x|z) {result['log_px']:.1f}")


def _write_json(path: pathlib.Path, value: Any) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=2, default=float))
  os.replace(tmp, path)


class _Timing:
  """A population's ``timing.json``: training seconds accumulate over
  milestones, evaluation seconds per milestone."""

  def __init__(self, root: pathlib.Path):
    self.path = root / "timing.json"
    self.timing = json.loads(self.path.read_text()) if self.path.is_file() else {}

  def before(self, step: int) -> float:
    """The training seconds spent up to the last milestone before ``step``."""
    earlier = max((int(k) for k in self.timing if int(k) < step), default=None)
    return self.timing[str(earlier)]["train_seconds"] if earlier is not None else 0.0

  def record(self, c: ml_collections.ConfigDict, step: int, train_seconds: float,
             eval_seconds: float, members: int, evaluated: int) -> None:
    self.timing[str(step)] = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                              "members": members, "evaluated": evaluated}
    mesh.barrier(f"sweep {self.path.parent} step {step} evaluated")
    line = {"population": str(self.path.parent), "step": step, "members": members,
            "train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1)}
    print(f"  population at step {step}: {json.dumps(line)}", flush=True)
    if mesh.is_chief():
      self.path.write_text(json.dumps(self.timing, indent=2))
      if c.timing_log:
        with open(c.timing_log, "a") as f:
          f.write(json.dumps(line) + "\n")


def evaluations(c: ml_collections.ConfigDict):
  """(method, value, seed, eval JSON) of every evaluation of every run in the grid."""
  root_of = grid.population_of(c)
  for method, value, seed in grid.runs(c):
    name = grid.run_name(method, value, seed)
    evals = root_of[name] / "members" / name / "evals"
    for path in sorted(evals.glob("step_*.json")) if evals.is_dir() else []:
      yield method, value, seed, dict(json.loads(path.read_text()),
                                      milestone=int(path.stem.removeprefix("step_")))



