"""The sweep's outputs, written into ``out`` from every run's evaluations:

  results.csv          one row per run at ``steps``: method, param, value,
                       seed, steps, mig, mig_with_shape, tc, ..., the other
                       metrics, udr, udr_spearman, train_seconds,
                       frozen_at_step (a run whose loss went non-finite keeps
                       its last finite state, evaluated if it can be)
  curves.csv           the same columns at every evaluated step of every run
  latents.csv          how the information spreads, at every evaluated step:
                       MIG of each factor (mig_<factor>) and each latent's KL
  summary.md           the β table, the paired differences by seed, and the
                       methods table
  mig_vs_beta.png      (β methods) MIG against β (mean line, every seed a
                       dot) beside TC against MIG
  tc_vs_mig.png        (β methods) TC against MIG, every run
  mig_vs_steps.png     MIG against steps, one line per run
  methods.png          per method, every metric against its hyperparameter
                       (a strip plot when each method has one value)
  latent_vs_factor_best.png  the figure of the β-TCVAE (MSS) run with the highest MIG
  sweep.json           the command, config, commit, machine and time spent
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import platform
import shutil
import subprocess
from typing import Any

import ml_collections
import numpy as np

from betatc_jax.metrics import suite
from betatc_jax.sweep import figures, grid
from betatc_jax.sweep.figures import METRIC_TITLES
from betatc_jax.sweep.grid import BETA_METHODS, LABELS, METHODS
from betatc_jax.sweep.running import evaluations

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSV_COLUMNS = ("method", "param", "value", "seed", "steps", "mig", "mig_with_shape", "tc", "mi",
               "dim_kl", "log_px", "kl", "active_latents", *suite.OTHER_METRICS, "udr",
               "udr_spearman",
               "train_seconds", "frozen_at_step")


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
    for metric in ("mig", "mig_with_shape", "tc", *suite.OTHER_METRICS):
      values = np.array([np.nan if r.get(metric) is None else r[metric] for r in group], float)
      stats[metric] = (values.mean(), values.min(), values.max())
    out[key] = stats
  return out



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
          "processor": cpu_name()}


def cpu_name() -> str:
  """The CPU's model name (and AVX-512 when it has it), from /proc/cpuinfo."""
  try:
    info = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or platform.machine()
  model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.startswith("model name")), platform.machine())
  return model + (", AVX-512" if " avx512f" in info else "")


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

def member_seconds_per_step(c: ml_collections.ConfigDict, curves: list[dict[str, Any]]
                            ) -> float | None:
  """A population's training wall time per step and member, at its last
  evaluated step (train_seconds accumulate over milestones), averaged over
  the populations: on one CPU process about one run's time per step."""
  root_of = grid.population_of(c)
  last: dict[pathlib.Path, tuple[int, float]] = {}
  for r in curves:
    root = root_of[grid.run_name(r["method"], r["value"], r["seed"])]
    if r["train_seconds"] and r["steps"] >= last.get(root, (0, 0.0))[0]:
      last[root] = (r["steps"], r["train_seconds"])
  if not last:
    return None
  sizes = {root: len(group) for root, group in grid.populations(c).items()}
  return float(np.mean([seconds / (steps * sizes[root]) for root, (steps, seconds) in last.items()]))


def _tables_and_figures(out: pathlib.Path, final: list[dict[str, Any]]) -> str:
  """summary.md's text; the β and methods figures."""
  summary = summarize(final)
  text = ""
  if any(method in BETA_METHODS for method, _ in summary):
    figures.mig_vs_beta(out / "mig_vs_beta.png", summary, final)
    figures.tc_vs_mig(out / "tc_vs_mig.png", final)
    text = markdown_table(summary) + paired_table(final) + "\n"
  figures.methods(out / "methods.png", summary, final)
  return text + methods_table(summary)


def report(c: ml_collections.ConfigDict, command: str) -> list[dict[str, Any]]:
  """Writes the outputs of the module docstring; returns results.csv's rows."""
  out = pathlib.Path(c.out)
  out.mkdir(parents=True, exist_ok=True)
  results = list(evaluations(c))                  # each eval JSON read once
  curves = collect(results)
  final = [r for r in curves if r["steps"] == c.steps]
  write_csv(out / "results.csv", final)
  write_csv(out / "curves.csv", curves)
  latents = latent_rows(results)
  if latents:
    write_csv(out / "latents.csv", latents, tuple(latents[0]))
  best = None
  if final:
    text = _tables_and_figures(out, final)
    (out / "summary.md").write_text(text)
    print(text)
    tc_runs = [r for r in final if r["method"] == "betatc_vae"]
    best = max(tc_runs, key=lambda r: r["mig"]) if tc_runs else None
    figure = grid.run_dir(c, "betatc_vae", best["value"], best["seed"]) / "latent_vs_factor.png" \
        if best else None
    if figure is not None and figure.is_file():
      shutil.copyfile(figure, out / "latent_vs_factor_best.png")
  seconds_per_step = member_seconds_per_step(c, curves)
  if curves:
    figures.mig_vs_steps(out / "mig_vs_steps.png", curves, seconds_per_step)
  root_of = grid.population_of(c)
  info = {"command": command, "config": json.loads(c.to_json()),
          "runs_finished": len(final), "runs_expected": len(grid.runs(c)),
          "best_betatc_run": grid.run_name("betatc_vae", best["value"], best["seed"])
          if best else None,
          "train_wall_seconds": sum({root_of[grid.run_name(r["method"], r["value"], r["seed"])]:
                                     r["train_seconds"] or 0 for r in final}.values()),
          "seconds_per_member_step": seconds_per_step, **machine()}
  (out / "sweep.json").write_text(json.dumps(info, indent=2))
  print(f"{len(final)}/{len(grid.runs(c))} runs finished at {c.steps} steps; outputs in {out}/")
  return final
