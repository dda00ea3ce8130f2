"""β-VAE vs β-TCVAE: MIG against β on procedural dSprites (the paper's Fig. 4).

  python scripts/sweep.py --steps 500 --eval_steps 250 --root workdirs/sweep --out results

Trains every (seed, β, method) of the grid with the paper's MLP and a
Bernoulli likelihood as one population (``betatc_jax.population``: all runs
in one compiled, vmapped step, the data on the device), evaluates each run at
every step in ``--eval_steps`` and at ``--steps`` (MIG with the paper's
estimator, shape excluded and included, and the ELBO decomposition), then
writes into ``--out``:

  results.csv          one row per run at ``--steps``: method, beta, seed,
                       steps, mig, mig_with_shape, tc, mi, dim_kl, log_px, ...
  curves.csv           the same columns at every evaluated step of every run
  mig_vs_beta.png      MIG and TC against β per method: mean, min–max band, each run
  mig_vs_steps.png     MIG against steps, one line per run
  tc_vs_mig.png        TC against MIG, every run (the paper's argument: lower TC, higher MIG)
  summary.md           the table of the README's Results section
  latent_vs_factor_best.png  the figure of the β-TCVAE run with the highest MIG
  sweep.json           the command, commit, hardware and time spent

Methods: ``beta_vae`` and ``betatc_vae`` (MSS) by default; ``betatc_vae_mws``
adds β-TCVAE with the MWS estimator, the official code's default.

Resumable: ROOT is the population's workdir (one checkpoint for all runs);
each run is an ordinary single-run workdir ``ROOT/members/<method>_beta<β>_seed<s>``
(its metrics, its checkpoint at ``--steps``, and ``evals/step_<N>.json``). A
rerun skips what is done and continues what is not, so the same sweep can
grow over several sittings (a larger ``--steps`` continues the population
from its last checkpoint). ``--report_only`` just rewrites the outputs from
what exists. A different grid needs a different ROOT.

Paper scale on a GPU (50 epochs of the full grid at B=2048, ~18,000 steps):
  python scripts/sweep.py --steps 18000 --eval_steps 2000,6000 --batch_size 2048 \\
      --subsample 1,1,1,1,1 --root workdirs/sweep_paper --out results_paper
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
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# results name -> (objective.name, objective.estimator)
METHODS = {"beta_vae": ("beta_vae", "mss"), "betatc_vae": ("betatc", "mss"),
           "betatc_vae_mws": ("betatc", "mws")}
DEFAULT_METHODS = ["beta_vae", "betatc_vae"]
CSV_COLUMNS = ("method", "beta", "seed", "steps", "mig", "mig_with_shape", "tc", "mi",
               "dim_kl", "log_px", "kl", "active_latents", "train_seconds")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  def floats(s):
    return [float(v) for v in s.split(",") if v]

  def ints(s):
    return [int(v) for v in s.split(",") if v]

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=500, help="training steps per run (the budget)")
  parser.add_argument("--eval_steps", type=ints, default=[250],
                      help="earlier steps to evaluate each run at too (the MIG-vs-steps curves)")
  parser.add_argument("--betas", type=floats, default=[1, 2, 4, 6, 8, 10])
  parser.add_argument("--methods", type=lambda s: s.split(","), default=DEFAULT_METHODS,
                      help=f"comma-separated, from {', '.join(METHODS)}")
  parser.add_argument("--seeds", type=ints, default=[0, 1])
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
  parser.add_argument("--checkpoint_every", type=int, default=500,
                      help="population checkpoint interval (the last step is always saved)")
  parser.add_argument("--skip_other_metrics", action="store_true",
                      help="no FactorVAE/DCI at --steps (they run on the host: ~15 s a run)")
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
  if args.checkpoint_every < 1:
    parser.error("--checkpoint_every must be >= 1")
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
SWEEP_KEYS = ("seed", "objective.name", "objective.beta", "objective.estimator", "batch_size",
              "learning_rate", "num_train_steps", "dataset.subsample", "eval.num_samples")


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


def run_name(method: str, beta: float, seed: int) -> str:
  return f"{method}_beta{beta:g}_seed{seed}"


def base_config(args: argparse.Namespace, steps: int):
  """What every run of the sweep shares: the paper's MLP, Bernoulli, the data,
  and the ``--set`` keys.

  Raises:
    ValueError: an unknown ``--set`` key, a value of the wrong type, or an
      invalid config.
  """
  import ml_collections
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
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"--set {key}: no such config key")
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(f"--set {key}={value!r}: {e}") from None
  train_lib.validate_config(config)
  return config


def grid(args: argparse.Namespace) -> list[tuple[str, float, int]]:
  """(method, β, seed) of every run, a whole seed first."""
  return [(method, beta, seed) for seed in args.seeds for beta in args.betas
          for method in args.methods]


def members(args: argparse.Namespace):
  from betatc_jax import population
  out = []
  for method, beta, seed in grid(args):
    name, estimator = METHODS[method]
    out.append(population.Member(run_name(method, beta, seed), {
        "seed": seed, "objective.name": name, "objective.beta": beta,
        "objective.estimator": estimator}))
  return out


def eval_path(workdir: pathlib.Path, step: int) -> pathlib.Path:
  return workdir / "evals" / f"step_{step:06d}.json"


def train_population(args: argparse.Namespace) -> None:
  """Trains the whole grid, as one population, to each milestone in turn and
  evaluates every run there."""
  from betatc_jax import population, train_lib

  root = pathlib.Path(args.root)
  runs = members(args)
  run_of = {run_name(*g): g for g in grid(args)}            # name -> (method, β, seed)
  milestones = sorted(set(args.eval_steps) | {args.steps})
  dataset = train_lib.dataset_from_config(base_config(args, args.steps))
  timing_path = root / "timing.json"
  timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
  for step in milestones:
    todo = [m for m in runs if not eval_path(population.member_dir(root, m.name), step).is_file()]
    if not todo:
      continue
    current = latest_checkpoint(root)
    if current > step:
      print(f"  population already past step {step} (checkpoint {current}); not evaluated there",
            flush=True)
      continue
    config = base_config(args, step)
    t0 = time.perf_counter()
    states, keys = population.train_population(config, runs, root, dataset=dataset,
                                               data_on_device=not args.host_data)
    earlier = max((int(k) for k in timing if int(k) < step), default=None)
    train_seconds = (timing[str(earlier)]["train_seconds"] if earlier is not None else 0.0) \
        + time.perf_counter() - t0
    final = step == args.steps
    if final and not args.no_export:
      population.export_members(root, states, keys, runs)
    t0 = time.perf_counter()
    index = {m.name: k for k, m in enumerate(runs)}
    results = population.evaluate_members(
        config, todo, population.unstack(states, np.asarray([index[m.name] for m in todo])),
        dataset, workdir=root if final else None,
        other_metrics=final and not args.skip_other_metrics)
    eval_seconds = time.perf_counter() - t0
    for member, result in zip(todo, results):
      method, beta, seed = run_of[member.name]
      result.update(method=method, beta=beta, seed=seed, train_seconds=train_seconds,
                    eval_seconds=eval_seconds / len(todo))
      path = eval_path(population.member_dir(root, member.name), step)
      path.parent.mkdir(exist_ok=True)
      tmp = path.with_suffix(".tmp")
      tmp.write_text(json.dumps(result, indent=2))
      os.replace(tmp, path)
      print(f"  {member.name} step {step}: MIG {result['mig']:.3f} (with shape "
            f"{result['mig_with_shape']:.3f}) TC {result['tc']:.2f} log p(x|z) "
            f"{result['log_px']:.1f}", flush=True)
    timing[str(step)] = {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                         "members": len(runs), "evaluated": len(todo)}
    timing_path.write_text(json.dumps(timing, indent=2))
    line = {"step": step, "members": len(runs), "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1)}
    print(f"  population at step {step}: {json.dumps(line)}", flush=True)
    if args.timing_log:
      with open(args.timing_log, "a") as f:
        f.write(json.dumps(line) + "\n")


def latest_checkpoint(workdir: pathlib.Path) -> int:
  directory = workdir / "checkpoints"
  steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
  return max(steps, default=0)


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
  """Every evaluation of every run in the grid, sorted."""
  rows = []
  for method in args.methods:
    for beta in args.betas:
      for seed in args.seeds:
        evals = pathlib.Path(args.root) / "members" / run_name(method, beta, seed) / "evals"
        for path in sorted(evals.glob("step_*.json")) if evals.is_dir() else []:
          result = json.loads(path.read_text())
          row = {k: result.get(k) for k in CSV_COLUMNS}
          row.update(method=method, beta=beta, seed=seed, steps=result["step"])
          rows.append(row)
  return sorted(rows, key=lambda r: (r["method"], r["beta"], r["seed"], r["steps"]))


def write_csv(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def summarize(rows: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
  """(method, β) -> mean, min and max over seeds of mig, mig_with_shape and tc."""
  import numpy as np
  groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
  for row in rows:
    groups.setdefault((row["method"], row["beta"]), []).append(row)
  out = {}
  for key, group in sorted(groups.items()):
    stats = {"seeds": len(group)}
    for metric in ("mig", "mig_with_shape", "tc"):
      values = np.array([r[metric] for r in group], float)
      stats[metric] = (values.mean(), values.min(), values.max())
    out[key] = stats
  return out


LABELS = {"beta_vae": "β-VAE", "betatc_vae": "β-TCVAE (MSS)", "betatc_vae_mws": "β-TCVAE (MWS)"}


def plot_mig_vs_beta(path: pathlib.Path, summary, rows: list[dict[str, Any]]) -> None:
  """MIG, MIG with shape and TC against β: the mean over seeds (line), the
  min–max over seeds (band) and every run (dots)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for color, (method, label) in zip(("C0", "C1", "C2"), LABELS.items()):
    keys = [k for k in summary if k[0] == method]
    if not keys:
      continue
    betas = [k[1] for k in keys]
    for ax, metric, title in zip(axes, ("mig", "mig_with_shape", "tc"),
                                 ("MIG (shape excluded)", "MIG (with shape)", "total correlation")):
      mean, low, high = (np.array([summary[k][metric][i] for k in keys]) for i in range(3))
      ax.plot(betas, mean, "-", color=color, label=label)
      ax.fill_between(betas, low, high, color=color, alpha=0.2)
      runs = [r for r in rows if r["method"] == method]
      ax.plot([r["beta"] for r in runs], [r[metric] for r in runs], "o", color=color, ms=3)
      ax.set_xlabel("β")
      ax.set_title(title)
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_mig_vs_steps(path: pathlib.Path, curves: list[dict[str, Any]]) -> None:
  """MIG against training steps, one line per run (colour: β, style: seed)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  methods = [m for m in LABELS if any(r["method"] == m for r in curves)]
  fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.6), sharey=True,
                           squeeze=False)
  betas = sorted({r["beta"] for r in curves})
  seeds = sorted({r["seed"] for r in curves})
  axes = axes[0]
  for ax, method in zip(axes, methods):
    label = LABELS[method]
    for ci, beta in enumerate(betas):
      for si, seed in enumerate(seeds):
        run = sorted((r["steps"], r["mig"]) for r in curves
                     if (r["method"], r["beta"], r["seed"]) == (method, beta, seed))
        if run:
          ax.plot(*zip(*run), "o" + ("-", "--", ":")[si % 3], color=f"C{ci}", ms=3,
                  label=f"β={beta:g}" if si == 0 else None)
    ax.set_title(f"{label} (lines: seeds {', '.join(map(str, seeds))})", fontsize=9)
    ax.set_xlabel("training steps")
    ax.legend(fontsize=7)
  axes[0].set_ylabel("MIG (shape excluded)")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_tc_vs_mig(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
  """TC against MIG, one dot per run (colour: method, size: β)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.8))
  for color, (method, label) in zip(("C0", "C1", "C2"), LABELS.items()):
    runs = [r for r in rows if r["method"] == method]
    if runs:
      ax.scatter([r["mig"] for r in runs], [r["tc"] for r in runs], s=[8 + 4 * r["beta"] for r in runs],
                 color=color, alpha=0.7, label=label)
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
  betas = sorted({beta for _, beta in summary})
  methods = [m for m in LABELS if any(key[0] == m for key in summary)]
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


def report(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
  """Writes the outputs listed in the module docstring; returns results.csv's rows."""
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  curves = collect(args)
  final = [r for r in curves if r["steps"] == args.steps]
  write_csv(out / "results.csv", final)
  write_csv(out / "curves.csv", curves)
  expected = len(args.methods) * len(args.betas) * len(args.seeds)
  best = None
  if final:
    summary = summarize(final)
    plot_mig_vs_beta(out / "mig_vs_beta.png", summary, final)
    plot_tc_vs_mig(out / "tc_vs_mig.png", final)
    (out / "summary.md").write_text(markdown_table(summary))
    print(markdown_table(summary))
    tc_runs = [r for r in final if r["method"] == "betatc_vae"]
    if tc_runs:
      best = max(tc_runs, key=lambda r: r["mig"])
      figure = pathlib.Path(args.root) / "members" / \
          run_name("betatc_vae", best["beta"], best["seed"]) / "latent_vs_factor.png"
      if figure.is_file():
        shutil.copyfile(figure, out / "latent_vs_factor_best.png")
  if curves:
    plot_mig_vs_steps(out / "mig_vs_steps.png", curves)
  info = {"command": "python scripts/sweep.py " + " ".join(argv), "args": vars(args),
          "runs_finished": len(final), "runs_expected": expected,
          "best_betatc_run": run_name("betatc_vae", best["beta"], best["seed"]) if best else None,
          "train_wall_seconds": sum(r["train_seconds"] or 0 for r in final),
          **machine()}
  (out / "sweep.json").write_text(json.dumps(info, indent=2))
  print(f"{len(final)}/{expected} runs finished at {args.steps} steps; outputs in {out}/")
  return final


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if not args.report_only:
    train_population(args)
  report(args, argv)
  return 0


if __name__ == "__main__":
  from betatc_jax import host_memory
  host_memory.retain_freed_memory()  # before JAX starts its threads
  sys.exit(main())
