"""β-TCVAE against β-VAE and the field's baselines: MIG and the other
metrics against each method's hyperparameter on procedural dSprites (the
paper's Fig. 4, and disentanglement_lib's comparison).

  .venv/bin/python scripts/sweep.py --steps 500 --eval_steps 250 --root workdirs/sweep \\
      --out workdirs/sweep_out
  .venv/bin/python scripts/sweep.py --steps 2000 --eval_steps "" --seeds 0 \\
      --methods betatc_vae,beta_vae,factorvae,dip_vae_i,dip_vae_ii,annealed_vae \\
      --root workdirs/methods --out workdirs/methods_out

Cost on 2 CPU cores: each run's evaluation at ``--steps`` takes ~51 s at the
default sub-grid with every metric (~9 s with ``--skip_other_metrics
--eval_samples 2000``), each ``--eval_steps`` milestone ~19 s a run
(docs/populations.md).

Trains every (seed, method, hyperparameter value) of the grid with the
paper's MLP and a Bernoulli likelihood as one population
(``betatc_jax.population``: all runs in one compiled, vmapped step, the
data on the device; FactorVAE's runs carry a discriminator and form a
second population in ROOT/critic), evaluates each run at every step in
``--eval_steps`` and at ``--steps`` (MIG with the paper's estimator, shape
excluded and included, the ELBO decomposition, and at ``--steps`` the other
metrics unless ``--skip_other_metrics``), then writes into ``--out``:

  results.csv          one row per run at ``--steps``: method, param, value,
                       seed, steps, mig, mig_with_shape, tc, ..., sap_score,
                       modularity, explicitness, beta_vae_score, ...,
                       frozen_at_step (a run whose loss went non-finite keeps
                       its last finite state, evaluated if it can be; the
                       others train on)
  curves.csv           the same columns at every evaluated step of every run
  latents.csv          how the information spreads, at every evaluated step of
                       every run: MIG of each factor (mig_<factor>) and each
                       latent's KL to the prior (kl_<j>, nats, on the dataset)
  methods.png          per method: MIG (mean, min–max band) and the other
                       metrics against its hyperparameter
  mig_vs_beta.png      (β methods) MIG and TC against β: mean, min–max band, each run
  mig_vs_steps.png     MIG against steps, one line per run
  tc_vs_mig.png        (β methods) TC against MIG, every run
  summary.md           the β table (as in docs/results.md) and the
                       methods table
  latent_vs_factor_best.png  the figure of the β-TCVAE run with the highest MIG
  sweep.json           the command, commit, hardware and time spent

Methods (``--methods``) and their hyperparameter grids (``METHODS``; ``--betas``
for the β methods, ``--values METHOD=...`` for any): ``beta_vae``,
``betatc_vae`` (MSS, the unbiased estimator: the default beside
``beta_vae``), ``betatc_vae_mws`` (MWS, the official code's estimator and
``configs/default.py``'s),
``betatc_official`` (the official code's training: MWS, PyTorch's init, a
(μ, log σ) head, its clamped Bernoulli; a population of its own in
ROOT/betatc_official), ``betatc_vae_mss_alpha`` (MSS with α = β: MI weighted
as TC), ``betatc_vae_mss_mws`` and ``betatc_vae_mws_mss`` (log q(z) from the
first estimator, each log q(z_j) from the second), ``factorvae`` (γ), ``dip_vae_i`` and ``dip_vae_ii`` (λ_od; λ_d = 10·λ_od and
λ_od), ``annealed_vae`` (C_max, reached after ``--capacity_steps``).

Resumable: ROOT is the population's workdir (one checkpoint for all runs);
each run is an ordinary single-run workdir
``ROOT/members/<method>_<param><value>_seed<s>`` (``ROOT/critic/members/...``
for FactorVAE: its metrics, its checkpoint at ``--steps``, and
``evals/step_<N>.json``). A rerun skips what is done and continues what is
not, so the same sweep can grow over several sittings (a larger ``--steps``
continues the population from its last checkpoint). ``--report_only`` just
rewrites the outputs from what exists. A different grid needs a different ROOT.

Several processes or hosts: the same command on each, with ``--set
distributed.coordinator_address=HOST:PORT --set distributed.num_processes=P
--set distributed.process_id=I`` (docs/populations.md).

Paper scale on a GPU (50 epochs of the full grid at B=2048, ~18,000 steps):
  .venv/bin/python scripts/sweep.py --steps 18000 --eval_steps 2000,6000 --batch_size 2048 \\
      --subsample 1,1,1,1,1 --root workdirs/sweep_paper --out workdirs/sweep_paper_out
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, NamedTuple

import numpy as np
from betatc_jax import state as state_lib
from betatc_jax import config as config_lib
from betatc_jax import workdir as wd
from betatc_jax import members as members_lib
from betatc_jax import mesh
from betatc_jax import loop
from betatc_jax.data import dataset_from_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

class Method(NamedTuple):
  """A method of the sweep: its objective, estimator, main hyperparameter
  (the config key, the short name used in run names and the plot label), its
  default grid (disentanglement_lib's for the baselines), fixed overrides,
  and keys ``tied`` to the hyperparameter (set to the same value). A fixed
  key outside ``members_lib.MEMBER_KEYS`` (the model's head, the likelihood)
  makes the method's runs a population of their own, in ROOT/<method>."""
  objective: str
  estimator: str
  key: str
  param: str
  symbol: str
  label: str
  grid: tuple[float, ...]
  fixed: tuple[tuple[str, Any], ...] = ()
  tied: tuple[str, ...] = ()


# The official code's training (rtqichen/beta-tcvae, vae_quant.py --tcvae):
# configs/dsprites_paper.py, whose docstring lists each detail.
OFFICIAL = (("model.param_init", "torch"), ("model.posterior_scale", "log_sigma"),
            ("objective.likelihood", "clamped_bernoulli"))


BETAS = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
METHODS = {
    "beta_vae": Method("beta_vae", "mss", "objective.beta", "beta", "β", "β-VAE", BETAS),
    "betatc_vae": Method("betatc", "mss", "objective.beta", "beta", "β", "β-TCVAE (MSS)", BETAS),
    "betatc_vae_mws": Method("betatc", "mws", "objective.beta", "beta", "β", "β-TCVAE (MWS)",
                             BETAS),
    "betatc_official": Method("betatc", "mws", "objective.beta", "beta", "β",
                              "β-TCVAE (official)", BETAS, OFFICIAL),
    "betatc_vae_mss_alpha": Method("betatc", "mss", "objective.beta", "beta", "β",
                                   "β-TCVAE (MSS, α=β)", BETAS, tied=("objective.alpha",)),
    "betatc_vae_mss_mws": Method("betatc", "mss", "objective.beta", "beta", "β",
                                 "β-TCVAE (q(z) MSS, q(z_j) MWS)", BETAS,
                                 (("objective.marginal_estimator", "mws"),)),
    "betatc_vae_mws_mss": Method("betatc", "mws", "objective.beta", "beta", "β",
                                 "β-TCVAE (q(z) MWS, q(z_j) MSS)", BETAS,
                                 (("objective.marginal_estimator", "mss"),)),
    "factorvae": Method("factorvae", "mss", "objective.factorvae_gamma", "gamma", "γ",
                        "FactorVAE", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)),
    "dip_vae_i": Method("dip_vae_i", "mss", "objective.dip_lambda_od", "lambda", "λ_od",
                        "DIP-VAE-I", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                        (("objective.dip_lambda_d_factor", 10.0),)),
    "dip_vae_ii": Method("dip_vae_ii", "mss", "objective.dip_lambda_od", "lambda", "λ_od",
                         "DIP-VAE-II", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                         (("objective.dip_lambda_d_factor", 1.0),)),
    "annealed_vae": Method("annealed_vae", "mss", "objective.capacity_max", "cmax", "C_max",
                           "AnnealedVAE", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)),
}
DEFAULT_METHODS = ["beta_vae", "betatc_vae"]
OTHER_METRICS = ("sap_score", "modularity", "explicitness", "beta_vae_score", "factorvae_score",
                 "dci_disentanglement")
CSV_COLUMNS = ("method", "param", "value", "seed", "steps", "mig", "mig_with_shape", "tc", "mi",
               "dim_kl", "log_px", "kl", "active_latents", *OTHER_METRICS, "udr", "udr_spearman",
               "train_seconds", "frozen_at_step")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  def floats(s):
    return [float(v) for v in s.split(",") if v]

  def ints(s):
    return [int(v) for v in s.split(",") if v]

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=500, help="training steps per run (the budget)")
  parser.add_argument("--eval_steps", type=ints, default=[250],
                      help="earlier steps to evaluate each run at too (the MIG-vs-steps curves)")
  parser.add_argument("--betas", type=floats, default=list(BETAS),
                      help="the grid of the β methods (beta_vae and every betatc_*)")
  parser.add_argument("--values", action="append", default=[], metavar="METHOD=V1,V2,...",
                      help="the grid of one method's hyperparameter (repeatable; default: "
                           "disentanglement_lib's grid, see METHODS)")
  parser.add_argument("--capacity_steps", type=int, default=700,
                      help="annealed_vae: steps over which C grows to C_max (disentanglement_lib: "
                           "a third of training)")
  parser.add_argument("--methods", type=lambda s: s.split(","), default=DEFAULT_METHODS,
                      help=f"comma-separated, from {', '.join(METHODS)}")
  parser.add_argument("--seeds", type=ints, default=[0, 1])
  parser.add_argument("--seeds_for", action="append", default=[], metavar="METHOD=S1,S2,...",
                      help="a method's own seeds, instead of --seeds (repeatable)")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--subsample", type=ints, default=[1, 1, 2, 2, 2],
                      help="procedural dSprites grid step per factor (1,1,2,2,2: 92,160 images)")
  parser.add_argument("--eval_samples", type=int, default=10_000, help="S of the MIG estimator")
  parser.add_argument("--root", default="workdirs/sweep", help="where the run workdirs go")
  parser.add_argument("--out", default="results", help="where the csv files and figures go")
  parser.add_argument("--report_only", action="store_true", help="train nothing; rewrite outputs")
  parser.add_argument("--host_data", action="store_true",
                      help="gather batches on the host (default: the dataset lives on the device)")
  parser.add_argument("--population_size", type=int, default=0,
                      help="at most this many runs per population (whole (method, value) "
                           "groups), trained one after another; 0: no limit")
  parser.add_argument("--checkpoint_every", type=int, default=500,
                      help="population checkpoint interval (the last step is always saved)")
  parser.add_argument("--skip_other_metrics", action="store_true",
                      help="no FactorVAE, DCI, SAP, modularity, explicitness or β-VAE score at "
                           "--steps (they run on the host: ~30 s a run at 92k points)")
  parser.add_argument("--no_export", action="store_true",
                      help="do not write each run's checkpoint into its member workdir")
  parser.add_argument("--timing_log", default="",
                      help="append one JSON line per milestone (train/eval seconds) to this file")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="set a config key shared by every run, e.g. objective.anneal_steps=500 "
                           "(repeatable; a Python literal, else a string)")
  args = parser.parse_args(argv)
  unknown = set(args.methods) - set(METHODS)
  if unknown:
    parser.error(f"unknown method(s) {sorted(unknown)}; choose from {sorted(METHODS)}")
  grids = {m: (tuple(args.betas) if METHODS[m].param == "beta" else METHODS[m].grid)
           for m in METHODS}
  for text in args.values:
    method, sep, values = text.partition("=")
    if not sep or method not in METHODS:
      parser.error(f"--values needs METHOD=V1,V2,... with METHOD from {sorted(METHODS)}, "
                   f"got {text!r}")
    try:
      grids[method] = tuple(floats(values))
    except ValueError:
      parser.error(f"--values {text!r}: not numbers")
  args.grids = {m: grids[m] for m in args.methods}
  args.method_seeds = {m: list(args.seeds) for m in args.methods}
  for text in args.seeds_for:
    method, sep, seeds = text.partition("=")
    if not sep or method not in args.methods:
      parser.error(f"--seeds_for needs METHOD=S1,S2,... with METHOD from --methods, got {text!r}")
    try:
      args.method_seeds[method] = ints(seeds)
    except ValueError:
      parser.error(f"--seeds_for {text!r}: not integers")
  if any(v < 0 for g in args.grids.values() for v in g) or not all(args.grids.values()):
    parser.error("every method needs a non-empty grid of values >= 0")
  if args.capacity_steps < 0:
    parser.error("--capacity_steps must be >= 0")
  if args.checkpoint_every < 1:
    parser.error("--checkpoint_every must be >= 1")
  if args.population_size < 0:
    parser.error("--population_size must be >= 0 (0: no limit)")
  if args.steps < 1 or any(s < 1 or s >= args.steps for s in args.eval_steps):
    parser.error("--steps must be >= 1 and every --eval_steps in [1, --steps)")
  if len(args.subsample) != 5:
    parser.error("--subsample needs one step per dSprites factor (5 numbers)")
  try:
    args.set = dict(parse_setting(s) for s in args.set)
    base_config(args, args.steps)
  except ValueError as e:
    parser.error(str(e))
  return args


# Keys each run of the grid sets itself, or the sweep's flags own.
SWEEP_KEYS = ("seed", "objective.name", "objective.estimator", "batch_size", "learning_rate",
              "num_train_steps", "dataset.subsample", "eval.num_samples",
              "objective.capacity_steps", *{m.key for m in METHODS.values()},
              *{k for m in METHODS.values() for k, _ in m.fixed},
              *{k for m in METHODS.values() for k in m.tied})


def parse_setting(text: str) -> tuple[str, Any]:
  """``"a.b=1e-3"`` -> ``("a.b", 0.001)``: the value as a Python literal, else a string."""
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise ValueError(f"--set needs KEY=VALUE, got {text!r}")
  if key in SWEEP_KEYS:
    raise ValueError(f"--set {key} is not allowed: the sweep sets it (its own flag or the grid)")
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def run_name(method: str, value: float, seed: int) -> str:
  return f"{method}_{METHODS[method].param}{value:g}_seed{seed}"


def static_settings(method: str) -> dict[str, Any]:
  """The method's fixed keys that its population shares (outside
  ``members_lib.MEMBER_KEYS``)."""
  from betatc_jax import population
  return {k: v for k, v in METHODS[method].fixed if k not in members_lib.MEMBER_KEYS}


def base_config(args: argparse.Namespace, steps: int, method: str | None = None):
  """What every run of the sweep shares: the paper's MLP, Bernoulli, the data,
  and the ``--set`` keys; with ``method``, also its population's
  ``static_settings``.

  Raises:
    ValueError: an unknown ``--set`` key, a value of the wrong type, or an
      invalid config.
  """
  from betatc_jax import default_config, train_lib
  config = default_config.get_config()
  config.batch_size = args.batch_size
  config.learning_rate = args.learning_rate
  config.num_train_steps = steps
  config.log_every_steps = min(50, steps)
  config.checkpoint_every_steps = min(steps, args.checkpoint_every)
  config.keep_checkpoints = 1           # an MLP checkpoint with Adam state is ~170 MB a run
  config.progress_bar = False
  config.model.arch = "mlp"
  config.objective.likelihood = "bernoulli"
  config.dataset.name = "dsprites"
  config.dataset.subsample = tuple(args.subsample)
  config.eval.at_end = False            # evaluated here, at every milestone
  config.eval.num_samples = args.eval_samples
  for key, value in args.set.items():
    try:
      config_lib.set_config_key(config, key, value)
    except ValueError as e:
      raise ValueError(f"--set {e}") from None
  for key, value in (static_settings(method) if method else {}).items():
    config_lib.set_config_key(config, key, value)
  config_lib.validate_config(config)
  return config


def grid(args: argparse.Namespace) -> list[tuple[str, float, int]]:
  """(method, hyperparameter value, seed) of every run, a whole seed first."""
  seeds = sorted({s for m in args.methods for s in args.method_seeds[m]})
  return [(method, value, seed) for seed in seeds for method in args.methods
          for value in args.grids[method] if seed in args.method_seeds[method]]


def population_root(args: argparse.Namespace, method: str) -> pathlib.Path:
  """Methods with a discriminator (FactorVAE) train as a second population
  in ROOT/critic: their train states differ from the others'. A method with
  ``static_settings`` trains in ROOT/<method>."""
  from betatc_jax import losses
  root = pathlib.Path(args.root)
  if METHODS[method].objective in losses.DISCRIMINATOR_OBJECTIVES:
    return root / "critic"
  return root / method if static_settings(method) else root


def populations(args: argparse.Namespace) -> dict[pathlib.Path, list[tuple[str, float, int]]]:
  """The grid's runs by population: root -> its (method, value, seed), in
  grid order. With ``--population_size N`` a population root of more than N
  runs is cut into ROOT/part0, part1, ... of at most N runs (each a run of
  whole (method, value) groups, the seeds UDR compares; a larger group is a
  part of its own), trained one after another: a population's states are
  all in memory at once (~154 MB a run for the MLP with Adam)."""
  by_root: dict[pathlib.Path, list[tuple[str, float, int]]] = {}
  for run in grid(args):
    by_root.setdefault(population_root(args, run[0]), []).append(run)
  size = args.population_size
  out: dict[pathlib.Path, list[tuple[str, float, int]]] = {}
  for root, runs in by_root.items():
    if not size or len(runs) <= size:
      out[root] = runs
      continue
    groups: dict[tuple[str, float], list[tuple[str, float, int]]] = {}
    for run in runs:
      groups.setdefault(run[:2], []).append(run)
    parts: list[list[tuple[str, float, int]]] = [[]]
    for group in groups.values():
      if parts[-1] and len(parts[-1]) + len(group) > size:
        parts.append([])
      parts[-1] += group
    out.update({root / f"part{i}": part for i, part in enumerate(parts)})
  return out


def population_of(args: argparse.Namespace) -> dict[str, pathlib.Path]:
  """run name -> the root of the population that trains it."""
  return {run_name(*run): root for root, runs in populations(args).items() for run in runs}


def run_dir(args: argparse.Namespace, method: str, value: float, seed: int) -> pathlib.Path:
  name = run_name(method, value, seed)
  return population_of(args)[name] / "members" / name


def member_overrides(method: str, value: float, seed: int, capacity_steps: int
                     ) -> dict[str, Any]:
  """A run's ``members_lib.MEMBER_KEYS`` settings: the method's objective,
  estimator, hyperparameter ``value`` (and the keys tied to it), its fixed
  member keys, and ``seed``."""
  m = METHODS[method]
  statics = static_settings(method)
  overrides = {"seed": seed, "objective.name": m.objective, "objective.estimator": m.estimator,
               m.key: value, **{k: value for k in m.tied},
               **{k: v for k, v in m.fixed if k not in statics}}
  if m.objective == "annealed_vae":
    overrides["objective.capacity_steps"] = capacity_steps
  return overrides


def members(args: argparse.Namespace) -> dict[pathlib.Path, list]:
  """The populations of the grid: root -> its members."""
  from betatc_jax import population
  return {root: [members_lib.Member(run_name(*run), member_overrides(*run, args.capacity_steps))
                 for run in runs] for root, runs in populations(args).items()}


def eval_path(workdir: pathlib.Path, step: int) -> pathlib.Path:
  return workdir / "evals" / f"step_{step:06d}.json"


def train_population(args: argparse.Namespace) -> None:
  """Trains the grid, as one population (two with FactorVAE), to each
  milestone in turn and evaluates every run there."""
  from betatc_jax import train_lib

  dataset = dataset_from_config(base_config(args, args.steps))
  run_of = {run_name(*g): g for g in grid(args)}            # name -> (method, value, seed)
  for root, runs in members(args).items():
    train_one_population(args, root, runs, run_of, dataset)


def train_one_population(args: argparse.Namespace, root: pathlib.Path, runs: list,
                         run_of: dict, dataset) -> None:
  from betatc_jax import population, processes

  method = run_of[runs[0].name][0]          # the population's static settings are its methods'

  milestones = sorted(set(args.eval_steps) | {args.steps})
  timing_path = root / "timing.json"
  timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
  for step in milestones:
    todo = [m for m in runs if not eval_path(wd.member_dir(root, m.name), step).is_file()]
    unexported = step == args.steps and not args.no_export and not all(
        (wd.member_dir(root, m.name) / "checkpoints" / str(step)).is_dir() for m in runs)
    if not todo and not unexported:
      continue
    current = wd.latest_step(root)
    if current > step:
      print(f"  population already past step {step} (checkpoint {current}); not evaluated there",
            flush=True)
      continue
    config = base_config(args, step, method)
    t0 = time.perf_counter()
    print(f"population {root} ({len(runs)} runs): training to step {step}", flush=True)
    states, keys = population.train_population(config, runs, root, dataset=dataset,
                                               data_on_device=not args.host_data,
                                               on_non_finite="freeze", progress=True)
    earlier = max((int(k) for k in timing if int(k) < step), default=None)
    train_seconds = (timing[str(earlier)]["train_seconds"] if earlier is not None else 0.0) \
        + time.perf_counter() - t0
    final = step == args.steps
    if final and not args.no_export:     # each process writes the runs it holds
      population.export_members(root, states, keys, runs)
    if not todo:                          # evaluated already; exported just now
      continue
    t0 = time.perf_counter()
    # Each process evaluates the runs it holds (all of them in one process).
    here = {runs[k].name: i for i, k in enumerate(population.held_rows_of(states))}
    todo = [m for m in todo if m.name in here]
    # UDR compares the seeds of one method and value: every such group of
    # runs this process holds (evaluated now or not), on the same images.
    local = [runs[k] for k in population.held_rows_of(states)]
    held = population.local_states(states)
    udr = population.member_udr(members_lib.validate_population(config, local), local,
                                held.params, dataset, udr_groups(local, run_of))
    udr_of = {m.name: u for m, u in zip(local, udr)}
    results = population.evaluate_members(
        config, todo, state_lib.unstack(held, np.asarray([here[m.name] for m in todo], np.int32)),
        dataset, workdir=root if final else None,
        other_metrics=final and not args.skip_other_metrics,
        frozen=wd.frozen_members(root), progress=mesh.is_chief(),
        udr_groups=(), extras=[udr_of[m.name] for m in todo])
    eval_seconds = time.perf_counter() - t0
    for member, result in zip(todo, results):
      method, value, seed = run_of[member.name]
      result.update(method=method, value=value, seed=seed, train_seconds=train_seconds,
                    eval_seconds=eval_seconds / len(todo))
      path = eval_path(wd.member_dir(root, member.name), step)
      path.parent.mkdir(exist_ok=True)
      tmp = path.with_suffix(".tmp")
      tmp.write_text(json.dumps(result, indent=2))
      os.replace(tmp, path)
      if "eval_error" in result:
        print(f"  {member.name} step {step}: frozen at step {result['frozen_at_step']}, not "
              f"evaluated ({result['eval_error']})", flush=True)
      else:
        print(f"  {member.name} step {step}: MIG {result['mig']:.3f} (with shape "
              f"{result['mig_with_shape']:.3f}) TC {result['tc']:.2f} log p(x|z) "
              f"{result['log_px']:.1f}", flush=True)
    timing[str(step)] = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                         "members": len(runs), "evaluated": len(todo)}
    mesh.barrier(f"sweep {root} step {step} evaluated")
    if mesh.is_chief():
      timing_path.write_text(json.dumps(timing, indent=2))
    line = {"population": str(root), "step": step, "members": len(runs), "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1)}
    print(f"  population at step {step}: {json.dumps(line)}", flush=True)
    if args.timing_log and mesh.is_chief():
      with open(args.timing_log, "a") as f:
        f.write(json.dumps(line) + "\n")


def udr_groups(runs: list, run_of: dict) -> list[list[str]]:
  """The runs' names grouped by (method, value): the seeds UDR compares."""
  groups: dict[tuple[str, float], list[str]] = {}
  for member in runs:
    method, value, _ = run_of[member.name]
    groups.setdefault((method, value), []).append(member.name)
  return list(groups.values())


def evaluations(args: argparse.Namespace):
  """(method, value, seed, eval JSON) of every evaluation of every run in the grid."""
  for method, value, seed in grid(args):
    evals = run_dir(args, method, value, seed) / "evals"
    for path in sorted(evals.glob("step_*.json")) if evals.is_dir() else []:
      yield method, value, seed, dict(json.loads(path.read_text()),
                                      milestone=int(path.stem.removeprefix("step_")))


def by_run_and_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  return sorted(rows, key=lambda r: (r["method"], r["value"], r["seed"], r["steps"]))


def collect(results: list) -> list[dict[str, Any]]:
  """curves.csv's rows from ``evaluations``, sorted."""
  rows = []
  for method, value, seed, result in results:
    row = {k: result.get(k) for k in CSV_COLUMNS}
    row.update(method=method, param=METHODS[method].param, value=value, seed=seed,
               steps=result["milestone"])
    rows.append(row)
  return by_run_and_step(rows)


def latent_rows(results: list) -> list[dict[str, Any]]:
  """latents.csv's rows from ``evaluations``: (method, value, seed, steps),
  each factor's MIG and each latent's KL."""
  rows = []
  for method, value, seed, result in results:
    row = {"method": method, "value": value, "seed": seed, "steps": result["milestone"]}
    row.update({f"mig_{name}": v for name, v in result.get("mig_per_factor", {}).items()})
    row.update({f"kl_{j}": v for j, v in enumerate(result.get("kl_per_dim", []))})
    rows.append(row)
  return by_run_and_step(rows)


def write_csv(path: pathlib.Path, rows: list[dict[str, Any]],
              columns: tuple[str, ...] = CSV_COLUMNS) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def summarize(rows: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
  """(method, value) -> mean, min and max over seeds of MIG, TC and the other metrics."""
  groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
  for row in rows:
    groups.setdefault((row["method"], row["value"]), []).append(row)
  out = {}
  for key, group in sorted(groups.items()):
    stats = {"seeds": len(group)}
    for metric in ("mig", "mig_with_shape", "tc", *OTHER_METRICS):
      values = np.array([np.nan if r.get(metric) is None else r[metric] for r in group], float)
      stats[metric] = (values.mean(), values.min(), values.max())
    out[key] = stats
  return out


LABELS = {name: m.label for name, m in METHODS.items()}
BETA_METHODS = [name for name, m in METHODS.items() if m.param == "beta"]
COLORS = [f"C{i}" for i in range(10)]


def plot_mig_vs_beta(path: pathlib.Path, summary, rows: list[dict[str, Any]]) -> None:
  """Left: MIG against β, one line per method (the mean over seeds) and
  every run a dot (nudged sideways by method, so seeds do not hide each
  other). Right: TC against MIG, every run."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  methods = [m for m in BETA_METHODS if any(k[0] == m for k in summary)]
  for i, (color, method) in enumerate(zip(COLORS, methods)):
    keys = sorted(k for k in summary if k[0] == method)
    seeds = sorted({r["seed"] for r in rows if r["method"] == method})
    label = f"{LABELS[method]} (mean of seeds {', '.join(map(str, seeds))})"
    left.plot([k[1] for k in keys], [summary[k]["mig"][0] for k in keys], "-", color=color,
              label=label, lw=2)
    runs = [r for r in rows if r["method"] == method]
    nudge = (i - (len(methods) - 1) / 2) * 0.12
    left.plot([r["value"] + nudge for r in runs], [r["mig"] for r in runs], "o", color=color,
              ms=4, alpha=0.7)
    right.plot([r["mig"] for r in runs], [r["tc"] for r in runs], "o", color=color, ms=5,
               alpha=0.7, label=LABELS[method])
  left.set_xlabel("β")
  left.set_ylabel("MIG (shape excluded)")
  left.set_title("MIG against β: lines the mean, dots each seed", fontsize=10)
  left.legend(fontsize=8)
  right.set_xlabel("MIG (shape excluded)")
  right.set_ylabel("total correlation (nats, dataset level)")
  right.set_title("TC against MIG, every run", fontsize=10)
  right.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def paired_table(rows: list[dict[str, Any]]) -> str:
  """Per β: each β-TCVAE variant minus β-VAE, seed by seed (the same seed
  in both), and the mean of those differences."""
  by = {(r["method"], r["value"], r["seed"]): r["mig"] for r in rows}
  variants = [m for m in BETA_METHODS if m != "beta_vae" and any(r["method"] == m for r in rows)]
  if not any(r["method"] == "beta_vae" for r in rows) or not variants:
    return ""
  out = []
  for method in variants:
    out.append(f"\nMIG of {LABELS[method]} − β-VAE, paired by seed:\n\n"
               "| β | by seed | mean | wins |\n|---|---|---|---|")
    for beta in sorted({r["value"] for r in rows if r["method"] == method}):
      seeds = sorted(s for (m, b, s) in by if m == method and b == beta
                     and ("beta_vae", beta, s) in by)
      diffs = [by[(method, beta, s)] - by[("beta_vae", beta, s)] for s in seeds]
      if not diffs:
        continue
      cells = ", ".join(f"{s}: {d:+.3f}" for s, d in zip(seeds, diffs))
      out.append(f"| {beta:g} | {cells} | {np.mean(diffs):+.3f} | "
                 f"{sum(d > 0 for d in diffs)}/{len(diffs)} |")
  return "\n".join(out) + "\n"


def plot_mig_vs_steps(path: pathlib.Path, curves: list[dict[str, Any]],
                      seconds_per_step: float | None = None) -> None:
  """MIG against training steps, one line per run (colour: the method's
  hyperparameter value, style: seed); with ``seconds_per_step``, a top axis
  in training seconds of one run."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  methods = [m for m in LABELS if any(r["method"] == m for r in curves)]
  fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.6), sharey=True,
                           squeeze=False)
  seeds = sorted({r["seed"] for r in curves})
  axes = axes[0]
  for ax, method in zip(axes, methods):
    label, symbol = LABELS[method], METHODS[method].symbol
    values = sorted({r["value"] for r in curves if r["method"] == method})
    for ci, value in enumerate(values):
      for si, seed in enumerate(seeds):
        run = sorted((r["steps"], r["mig"]) for r in curves
                     if (r["method"], r["value"], r["seed"]) == (method, value, seed))
        if run:
          ax.plot(*zip(*run), "o" + ("-", "--", ":")[si % 3], color=f"C{ci % 10}", ms=3,
                  label=f"{symbol}={value:g}" if si == 0 else None)
    ax.set_title(f"{label} (lines: seeds {', '.join(map(str, seeds))})", fontsize=9)
    ax.set_xlabel("training steps")
    if seconds_per_step:
      top = ax.secondary_xaxis("top", functions=(lambda n: n * seconds_per_step,
                                                 lambda t: t / seconds_per_step))
      top.set_xlabel("≈ training seconds of one run", fontsize=8)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("MIG (shape excluded)")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_tc_vs_mig(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
  """TC against MIG, one dot per run of the β methods (colour: method, size: β)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.8))
  for color, method in zip(COLORS, BETA_METHODS):
    runs = [r for r in rows if r["method"] == method]
    if runs:
      ax.scatter([r["mig"] for r in runs], [r["tc"] for r in runs],
                 s=[8 + 4 * r["value"] for r in runs], color=color, alpha=0.7,
                 label=LABELS[method])
  ax.set_xlabel("MIG (shape excluded)")
  ax.set_ylabel("total correlation (nats)")
  ax.set_title("every run at the final step (dot size: β)", fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def markdown_table(summary) -> str:
  """One row per β: MIG (shape excluded; mean and [min, max] over seeds), MIG
  with shape and TC (means), for each method in the sweep."""
  def cell(stats, metric, spread):
    mean, low, high = stats[metric]
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]" if spread else f"{mean:.2f}" if metric == "tc" \
        else f"{mean:.3f}"
  betas = sorted({beta for method, beta in summary if method in BETA_METHODS})
  methods = [m for m in BETA_METHODS if any(key[0] == m for key in summary)]
  columns = [f"{LABELS[m].replace(' (MSS)', '')} {title}" for title in ("MIG", "MIG w/ shape", "TC")
             for m in methods]
  header = "| β | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1) + "\n"
  rows = []
  for beta in betas:
    cells = [f"{beta:g}"]
    for metric, spread in (("mig", True), ("mig_with_shape", False), ("tc", False)):
      for method in methods:
        stats = summary.get((method, beta))
        cells.append(cell(stats, metric, spread) if stats else "–")
    rows.append("| " + " | ".join(cells) + " |")
  return header + "\n".join(rows) + "\n"


def machine() -> dict[str, Any]:
  import jax
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  return {"commit": commit, "python": platform.python_version(), "jax": jax.__version__,
          "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
          "processor": platform.processor() or platform.machine()}


METRIC_TITLES = {"mig": "MIG", "sap_score": "SAP", "modularity": "modularity",
                 "explicitness": "explicitness", "beta_vae_score": "β-VAE score",
                 "factorvae_score": "FactorVAE score", "dci_disentanglement": "DCI dis.",
                 "tc": "TC"}


def methods_table(summary) -> str:
  """One row per (method, hyperparameter value): the mean over seeds of MIG
  ([min, max] too), the other metrics and TC; – where a metric was skipped."""
  metrics = list(METRIC_TITLES)
  header = ("| method | hyperparameter | " + " | ".join(METRIC_TITLES.values()) + " |\n|"
            + "---|" * (len(metrics) + 2) + "\n")
  rows = []
  for method in [m for m in METHODS if any(k[0] == m for k in summary)]:
    for (name, value), stats in summary.items():
      if name != method:
        continue
      cells = [LABELS[method], f"{METHODS[method].symbol} = {value:g}"]
      for metric in metrics:
        mean, low, high = stats[metric]
        if np.isnan(mean):
          cells.append("–")
        elif metric == "mig" and stats["seeds"] > 1:
          cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        else:
          cells.append(f"{mean:.2f}" if metric == "tc" else f"{mean:.3f}")
      rows.append("| " + " | ".join(cells) + " |")
  return header + "\n".join(rows) + "\n"


def plot_methods(path: pathlib.Path, summary, rows: list[dict[str, Any]]) -> None:
  """One panel per method: MIG (mean line, min–max band, every run) and the
  other metrics' means against the method's hyperparameter."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  methods = [m for m in METHODS if any(k[0] == m for k in summary)]
  if all(sum(k[0] == m for k in summary) == 1 for m in methods):
    plot_methods_strip(path, methods, rows)
    return
  fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), sharey=True,
                           squeeze=False)
  for ax, method in zip(axes[0], methods):
    keys = [k for k in summary if k[0] == method]
    values = [k[1] for k in keys]
    for ci, metric in enumerate(m for m in METRIC_TITLES if m != "tc"):
      mean = np.array([summary[k][metric][0] for k in keys])
      if np.all(np.isnan(mean)):
        continue
      ax.plot(values, mean, "o-" if metric == "mig" else ".--", color=f"C{ci}",
              label=METRIC_TITLES[metric], lw=2 if metric == "mig" else 1)
      if metric == "mig":
        low, high = (np.array([summary[k][metric][i] for k in keys]) for i in (1, 2))
        ax.fill_between(values, low, high, color="C0", alpha=0.2)
    if len(values) > 1 and max(values) / max(min(values), 1e-9) >= 10:
      ax.set_xscale("log")
    ax.set_xlabel(METHODS[method].symbol)
    ax.set_title(LABELS[method], fontsize=10)
  axes[0][0].set_ylabel("score")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_methods_strip(path: pathlib.Path, methods: list[str], rows: list[dict[str, Any]]
                       ) -> None:
  """One hyperparameter value per method: methods on x, each seed's MIG a
  dot, the mean a bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 2, 4))
  for x, method in enumerate(methods):
    runs = [r for r in rows if r["method"] == method]
    values = [r["mig"] for r in runs]
    ax.plot([x - 0.25, x + 0.25], [np.mean(values)] * 2, "-", color="k", lw=2)
    spread = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
    ax.plot(x + np.asarray(spread), values, "o", color=f"C{x % 10}", ms=6, alpha=0.8)
  value = {METHODS[m].symbol + " = " + f"{r['value']:g}" for m in methods
           for r in rows if r["method"] == m}
  ax.set_xticks(range(len(methods)), [LABELS[m] for m in methods], rotation=25, ha="right",
                fontsize=8)
  ax.set_ylabel("MIG (shape excluded)")
  ax.set_title(f"{', '.join(sorted(value))}: every seed a dot, the bar the mean", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def member_seconds_per_step(args: argparse.Namespace, curves: list[dict[str, Any]]
                            ) -> float | None:
  """A population's training wall time per step and member, at its last
  evaluated step (train_seconds accumulate over milestones): on one CPU
  process about one run's time per step (B=64, paper MLP: 0.050–0.054 s
  for 4–9 members against 0.054 s alone, 2 AMD EPYC cores)."""
  root_of = population_of(args)
  last = {}
  for r in curves:
    root = root_of[run_name(r["method"], r["value"], r["seed"])]
    if r["train_seconds"] and r["steps"] >= last.get(root, (0, 0.0))[0]:
      last[root] = (r["steps"], r["train_seconds"])
  if not last:
    return None
  sizes = {root: len(runs) for root, runs in populations(args).items()}
  rates = [seconds / (steps * sizes[root]) for root, (steps, seconds) in last.items()]
  return float(np.mean(rates))


def report(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
  """Writes the outputs listed in the module docstring; returns results.csv's rows."""
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = list(evaluations(args))                  # each eval JSON read once
  curves = collect(results)
  final = [r for r in curves if r["steps"] == args.steps]
  write_csv(out / "results.csv", final)
  write_csv(out / "curves.csv", curves)
  latents = latent_rows(results)
  if latents:
    write_csv(out / "latents.csv", latents, tuple(latents[0]))
  expected = len(grid(args))
  best = None
  if final:
    summary = summarize(final)
    text = ""
    if any(method in BETA_METHODS for method, _ in summary):
      plot_mig_vs_beta(out / "mig_vs_beta.png", summary, final)
      plot_tc_vs_mig(out / "tc_vs_mig.png", final)
      text = markdown_table(summary) + paired_table(final) + "\n"
    plot_methods(out / "methods.png", summary, final)
    text += methods_table(summary)
    (out / "summary.md").write_text(text)
    print(text)
    tc_runs = [r for r in final if r["method"] == "betatc_vae"]
    if tc_runs:
      best = max(tc_runs, key=lambda r: r["mig"])
      figure = run_dir(args, "betatc_vae", best["value"], best["seed"]) / "latent_vs_factor.png"
      if figure.is_file():
        shutil.copyfile(figure, out / "latent_vs_factor_best.png")
  seconds_per_step = member_seconds_per_step(args, curves)
  if curves:
    plot_mig_vs_steps(out / "mig_vs_steps.png", curves, seconds_per_step)
  info = {"command": "python scripts/sweep.py " + " ".join(argv), "args": vars(args),
          "runs_finished": len(final), "runs_expected": expected,
          "best_betatc_run": run_name("betatc_vae", best["value"], best["seed"]) if best else None,
          "train_wall_seconds": sum({population_of(args)[run_name(r["method"], r["value"],
                                                                  r["seed"])]:
                                     r["train_seconds"] or 0 for r in final}.values()),
          "seconds_per_member_step": seconds_per_step,
          **machine()}
  (out / "sweep.json").write_text(json.dumps(info, indent=2))
  print(f"{len(final)}/{expected} runs finished at {args.steps} steps; outputs in {out}/")
  return final


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  sys.stdout.reconfigure(line_buffering=True)     # each line as it comes, redirected or not
  args = parse_args(argv)
  from betatc_jax import checkpointing, cli, population, processes, sharding
  try:
    mesh.initialize_from_config(base_config(args, args.steps))   # before any JAX work
    if not args.report_only:
      train_population(args)
    mesh.barrier("sweep trained")
    if mesh.is_chief():     # the tables and figures, once, from every run's evaluation
      report(args, argv)
  except (OSError, ValueError, checkpointing.CheckpointError) as e:
    cli.fail(e)
  except loop.NonFiniteLossError as e:
    cli.fail(e, code=cli.NON_FINITE)
  return 0


if __name__ == "__main__":
  from betatc_jax import host_memory
  host_memory.retain_freed_memory()  # before JAX starts its threads
  sys.exit(main())
