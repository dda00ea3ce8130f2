"""Adds a GPU job's rows to results_paper/ and rebuilds its summary and figures.

  python benchmarks/gpu/merge.py OUT_DIR [--results results_paper]

OUT_DIR is what benchmarks/gpu/paper_sweep.sh wrote: rows.csv (one row per
run, ``gpu_queue.ROW_COLUMNS``), evals.jsonl (each run's whole evaluation),
plan.json, timing.log. Into ``--results`` it writes:

  results.csv    every run of every job, one row per key (a new row replaces
                 an old one with the same key unless the old one finished
                 and the new one did not)
  latents.csv    per run: each factor's MIG (mig_<factor>) and each latent's
                 KL to the prior (kl_<j>), by key
  summary.md     MIG (mean [min, max] over seeds) and TC per method and β;
                 the MSS runs against the official mode's and MWS's, paired
                 by β and seed; the runs that did not finish
  mig_vs_beta.png, tc_vs_mig.png, paired.png   from the finished rows
  jobs/<job>/    the job's plan.json, timing.log, profile.json and evals.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import gpu_queue  # noqa: E402
from betatc_jax.sweep import figures, grid, report  # noqa: E402  (on sys.path through gpu_queue)

RESULTS = gpu_queue.ROOT / "results_paper"
# (x, y) method pairs of paired.png and summary.md: the unbiased estimator
# against the official training and against MWS alone.
PAIRS = (("betatc_vae", "betatc_official"), ("betatc_vae", "betatc_vae_mws"),
         ("betatc_vae", "betatc_vae_mss_alpha"))
JOB_FILES = ("plan.json", "timing.log", "profile.json", "evals.jsonl")


def write_csv(path: pathlib.Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
              ) -> None:
  tmp = path.with_suffix(".tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows([{c: row.get(c, "") for c in columns} for row in rows])
  tmp.replace(path)


def sort_key(row: Mapping[str, Any]) -> tuple:
  return (row["method"], float(row["value"]), int(row["seed"]), row["num_train_steps"],
          row["batch_size"], row["subsample"])


def merge_rows(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]
               ) -> tuple[list[dict[str, Any]], dict[str, int]]:
  """One row per key: ``new`` replaces ``old`` unless only the old one
  finished (``gpu_queue.finished``).

  Returns:
    (the merged rows, sorted; counts of added, replaced and kept rows).
  """
  merged = {gpu_queue.row_key(r): dict(r) for r in old}
  counts = {"added": 0, "replaced": 0, "kept": 0}
  for row in new:
    key = gpu_queue.row_key(row)
    if key not in merged:
      counts["added"] += 1
    elif gpu_queue.finished(merged[key]) and not gpu_queue.finished(row):
      counts["kept"] += 1
      continue
    else:
      counts["replaced"] += 1
    merged[key] = dict(row)
  return sorted(merged.values(), key=sort_key), counts


def latent_rows(evals: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """latents.csv's rows from evals.jsonl's records ({"key": ..., "result": ...})."""
  rows = []
  for record in evals:
    result = record["result"]
    if "mig_per_factor" not in result:
      continue
    row = dict(record["key"], method=record["method"], steps=result["step"])
    row.update({f"mig_{k}": v for k, v in result["mig_per_factor"].items()})
    row.update({f"kl_{j}": v for j, v in enumerate(result["kl_per_dim"])})
    rows.append(row)
  return rows


def read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def numeric(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """The finished, evaluated rows with float metrics (sweep.py's plots' rows)."""
  out = []
  for r in rows:
    if gpu_queue.finished(r) and not r.get("frozen_at_step") and r.get("mig") not in ("", None):
      row = dict(r, value=float(r["value"]), seed=int(r["seed"]))
      row.update({m: float(r[m]) if r.get(m) not in ("", None) else None
                  for m in gpu_queue.METRICS})
      out.append(row)
  return out


def pairs(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> list[tuple[float, int, float, float]]:
  """(β, seed, MIG of method x, MIG of method y) for every (β, seed) both have
  at the same steps, batch and dataset."""
  def at(method):
    return {(r["value"], r["seed"], r["num_train_steps"], r["batch_size"], r["subsample"]): r["mig"]
            for r in rows if r["method"] == method}

  xs, ys = at(x), at(y)
  return sorted((k[0], k[1], xs[k], ys[k]) for k in xs.keys() & ys.keys())


def plot_paired(path: pathlib.Path, rows: Sequence[Mapping[str, Any]]) -> bool:
  """One panel per pair of ``PAIRS`` with data: y's MIG against x's, one dot
  per (β, seed), the diagonal drawn. False when no pair has data."""
  panels = [(x, y, pairs(rows, x, y)) for x, y in PAIRS]
  panels = [p for p in panels if p[2]]
  if not panels:
    return False
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
  for ax, (x, y, points) in zip(axes[0], panels):
    betas = sorted({p[0] for p in points})
    for ci, beta in enumerate(betas):
      sel = [p for p in points if p[0] == beta]
      ax.scatter([p[2] for p in sel], [p[3] for p in sel], color=f"C{ci}", label=f"β={beta:g}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    top = max(max(p[2], p[3]) for p in points) * 1.1
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"MIG, {grid.LABELS[x]}")
    ax.set_ylabel(f"MIG, {grid.LABELS[y]}")
    ax.set_title("same β and seed", fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def summary_text(rows: Sequence[Mapping[str, Any]]) -> str:
  """summary.md: the β table, the paired tables, the unfinished runs."""
  done = numeric(rows)
  parts = ["# Paper-scale runs\n\n",
           f"{len(rows)} runs; {len(done)} finished and evaluated. MIG excludes shape; "
           "mean [min, max] over seeds. Every row: results.csv.\n"]
  by_setting: dict[tuple, list] = {}
  for r in done:
    by_setting.setdefault((r["num_train_steps"], r["batch_size"], r["subsample"]), []).append(r)
  for (steps, batch, subsample), group in sorted(by_setting.items()):
    seeds = report.summarize(group)
    counts = ", ".join(f"{grid.LABELS[m]} β={v:g}: {s['seeds']}" for (m, v), s in seeds.items())
    parts.append(f"\n## {steps} steps, B = {batch}, dSprites subsample {subsample}\n\n")
    parts.append(report.markdown_table(seeds))
    parts.append(f"\nSeeds per cell: {counts}.\n")
  for x, y in PAIRS:
    points = pairs(done, x, y)
    if points:
      parts.append(f"\n## {grid.LABELS[y]} against {grid.LABELS[x]}, paired\n\n")
      parts.append(f"| β | seed | MIG {grid.LABELS[x]} | MIG {grid.LABELS[y]} | difference |\n"
                   "|---|---|---|---|---|\n")
      parts += [f"| {b:g} | {s} | {a:.3f} | {c:.3f} | {c - a:+.3f} |\n" for b, s, a, c in points]
  unfinished = [r for r in rows if not gpu_queue.finished(r) or r.get("frozen_at_step")
                or r.get("eval_error")]
  if unfinished:
    parts.append("\n## Runs that did not finish\n\n")
    for r in unfinished:
      why = (f"non-finite at step {r['frozen_at_step']}" if r.get("frozen_at_step")
             else f"stopped at step {r['steps']} of {r['num_train_steps']}")
      parts.append(f"- {grid.run_name(r['method'], float(r['value']), int(r['seed']))}: {why}"
                   + (f" ({r['eval_error']})" if r.get("eval_error") else "") + "\n")
  return "".join(parts)


def rebuild(results: pathlib.Path, rows: Sequence[Mapping[str, Any]]) -> None:
  """summary.md and the figures of ``results`` from all ``rows``."""
  done = numeric(rows)
  (results / "summary.md").write_text(summary_text(rows))
  for name in ("mig_vs_beta.png", "tc_vs_mig.png", "paired.png"):
    (results / name).unlink(missing_ok=True)
  if done:
    figures.mig_vs_beta(results / "mig_vs_beta.png", report.summarize(done), done)
    figures.tc_vs_mig(results / "tc_vs_mig.png", done)
    plot_paired(results / "paired.png", done)


def merge(out_dir: pathlib.Path, results: pathlib.Path) -> dict[str, int]:
  """Merges ``out_dir``'s rows and latents into ``results`` and rebuilds it.

  Raises:
    FileNotFoundError: ``out_dir`` has no rows.csv.
    ValueError: rows.csv's columns are not ``gpu_queue.ROW_COLUMNS``.
  """
  rows_path = out_dir / "rows.csv"
  if not rows_path.is_file():
    raise FileNotFoundError(f"{out_dir} has no rows.csv: is it a GPU job's output folder?")
  new = gpu_queue.read_rows(rows_path)
  with open(rows_path, newline="") as f:
    header = next(csv.reader(f), [])
  if tuple(header) != gpu_queue.ROW_COLUMNS:
    raise ValueError(f"{rows_path}: columns {header} are not {list(gpu_queue.ROW_COLUMNS)}")
  results.mkdir(parents=True, exist_ok=True)
  rows, counts = merge_rows(gpu_queue.read_rows(results / "results.csv"), new)
  write_csv(results / "results.csv", rows, gpu_queue.ROW_COLUMNS)
  latents = {gpu_queue.row_key(r): r for r in gpu_queue.read_rows(results / "latents.csv")}
  for r in latent_rows(read_jsonl(out_dir / "evals.jsonl")):
    latents[gpu_queue.row_key(r)] = r
  if latents:
    columns = list(dict.fromkeys(c for r in latents.values() for c in r))
    write_csv(results / "latents.csv", sorted(latents.values(), key=sort_key), columns)
  job = next((r["job"] for r in new if r.get("job")), None)
  if job:
    directory = results / "jobs" / job
    directory.mkdir(parents=True, exist_ok=True)
    for name in JOB_FILES:
      if (out_dir / name).is_file():
        shutil.copyfile(out_dir / name, directory / name)
  rebuild(results, rows)
  return counts


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("out_dir", help="the GPU job's output folder")
  parser.add_argument("--results", default=str(RESULTS), help="the results folder to merge into")
  args = parser.parse_args(argv)
  try:
    counts = merge(pathlib.Path(args.out_dir), pathlib.Path(args.results))
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{counts['added']} rows added, {counts['replaced']} replaced, {counts['kept']} kept; "
        f"{args.results}/results.csv, summary.md and the figures rebuilt")
  return 0


if __name__ == "__main__":
  sys.exit(main())
