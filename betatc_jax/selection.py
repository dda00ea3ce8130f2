"""Choosing a run's seed without labels: train several seeds for a short
phase, keep the one whose representation the others agree with most (UDR),
and continue only that one.

With ``config.selection.members = K`` (> 1) and ``selection.steps = P``, a
run in workdir W:

1. trains K candidates, seeds ``seed + 1000·i`` (i = 0 … K−1; candidate 0
   is the config's own seed), for P steps as one population in
   ``W/selection`` (their metrics stay in ``W/selection/members``);
2. scores each by its UDR among the K (``evaluate.udr_of_runs``: Lasso
   similarity, disentanglement_lib's default; the Spearman one is kept
   too), on the same 1,000 images, using no factor labels;
3. writes the highest-scoring candidate's state as W's own checkpoint at
   step P (and its metrics as W's first rows), records the choice in
   ``W/selection.json`` (every candidate's seed and UDR, the pick) and
   removes the population's checkpoints;
4. and the run goes on from there to ``num_train_steps`` as an ordinary run
   of the picked seed (resumable; a rerun reads ``selection.json`` and does
   not choose again). ``eval.json`` carries the record as ``selection``.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np

from betatc_jax import checkpointing, evaluate, mesh, population, state
from betatc_jax import workdir as wd
from betatc_jax.members import Member, validate_population
from betatc_jax.data.ground_truth import GroundTruthDataset

SELECTION_FILE = "selection.json"
SEED_STRIDE = 1000


def candidate_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """The K candidates' seeds: ``seed + 1000·i`` (distinct for base seeds
  that differ by less than 1000)."""
  return [config.seed + SEED_STRIDE * i for i in range(config.selection.members)]


def candidates(config: ml_collections.ConfigDict
               ) -> tuple[ml_collections.ConfigDict, list[Member]]:
  """The short phase as a population: its base config (P steps, no
  evaluation, no selection of its own) and one member per candidate seed."""
  base = ml_collections.ConfigDict(config.to_dict())
  base.num_train_steps = config.selection.steps
  base.checkpoint_every_steps = config.selection.steps
  base.eval.at_end = False
  base.selection.members = 0
  members = [Member(f"seed{s}", {"seed": s}) for s in candidate_seeds(config)]
  return base, members


def load_record(workdir: str | pathlib.Path) -> dict[str, Any] | None:
  """The choice recorded in ``workdir/selection.json``, or None."""
  path = pathlib.Path(workdir) / SELECTION_FILE
  return json.loads(path.read_text()) if path.is_file() else None


def picked_config(config: ml_collections.ConfigDict, record: dict[str, Any]
                  ) -> ml_collections.ConfigDict:
  """The run's config after the choice: the picked candidate's seed."""
  picked = ml_collections.ConfigDict(config.to_dict())
  picked.seed = int(record["picked_seed"])
  return picked


def select(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
           dataset: GroundTruthDataset, progress: bool = False) -> dict[str, Any]:
  """Steps 1–3 of the module docstring, once: the record of the choice (read
  back from ``selection.json`` when the choice was made before).

  Raises:
    ValueError: with several processes (the choice runs in one).
  """
  record = load_record(workdir)
  if record is not None:
    return record
  if jax.process_count() > 1:
    raise ValueError("selection.members > 1 runs in one process.")
  workdir = pathlib.Path(workdir)
  base, members = candidates(config)
  phase = workdir / "selection"
  print(f"selection: {len(members)} candidates (seeds "
        f"{', '.join(str(m.overrides['seed']) for m in members)}), "
        f"{config.selection.steps} steps each", flush=True)
  states, keys = population.train_population(base, members, phase, dataset=dataset,
                                             progress=progress)
  configs = validate_population(base, members)
  params = jax.device_get(states.params)
  scores = evaluate.udr_of_runs(configs, [state.unstack(params, k)
                                          for k in range(len(members))], dataset)
  udr = np.nan_to_num(scores["udr"], nan=-np.inf)
  best = int(np.argmax(udr))                     # ties: the lowest seed
  record = {
      "steps": int(config.selection.steps),
      "candidates": [{"seed": int(m.overrides["seed"]),
                      "udr": _number(scores["udr"][k]),
                      "udr_spearman": _number(scores["udr_spearman"][k])}
                     for k, m in enumerate(members)],
      "picked_seed": int(members[best].overrides["seed"]),
      "picked_udr": _number(scores["udr"][best]),
  }
  host = mesh.local_tree(state.checkpoint_tree(states, keys))
  checkpointing.save_runs([(workdir, int(host["step"][best]), state.unstack(host, best))],
                          config.keep_checkpoints)
  shutil.copyfile(wd.member_dir(phase, members[best].name) / "metrics.jsonl",
                  workdir / "metrics.jsonl")            # the run's rows from step 1
  tmp = workdir / (SELECTION_FILE + ".tmp")
  tmp.write_text(json.dumps(record, indent=2))
  tmp.replace(workdir / SELECTION_FILE)
  shutil.rmtree(phase / "checkpoints", ignore_errors=True)   # the choice is made
  listed = ", ".join(f"seed {c['seed']}: {c['udr']}" for c in record["candidates"])
  print(f"selection: UDR {listed}; continuing seed {record['picked_seed']}", flush=True)
  return record


def _number(value: float) -> float | None:
  return None if np.isnan(value) else float(value)
