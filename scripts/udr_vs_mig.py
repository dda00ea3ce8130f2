"""Does UDR pick the runs MIG would? From a sweep's curves.csv (``udr`` and
``mig`` of every run at every evaluated step), per cell (method, β) and step:

* the rank correlation (Spearman) of UDR with MIG across the cell's seeds;
* the MIG of the seed UDR picks (its highest UDR), against the cell's median
  and best MIG, and whether the pick is the best.

  .venv/bin/python scripts/udr_vs_mig.py results/cpu_beta/curves.csv [--steps 2500]

Prints a Markdown table per step and a summary line per method.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict

import numpy as np
import scipy.stats


def cells(path: str, steps: int | None) -> dict[tuple[str, float, int], list[dict]]:
  """(method, β, step) -> its runs' rows with a UDR."""
  out: dict[tuple[str, float, int], list[dict]] = defaultdict(list)
  with open(path) as f:
    for row in csv.DictReader(f):
      if row["udr"] in ("", None) or row["mig"] in ("", None):
        continue
      step = int(row["steps"])
      if steps is None or step == steps:
        out[(row["method"], float(row["value"]), step)].append(
            {"seed": int(row["seed"]), "mig": float(row["mig"]), "udr": float(row["udr"])})
  return out


def cell_summary(runs: list[dict]) -> dict[str, float]:
  mig = np.array([r["mig"] for r in runs])
  udr = np.array([r["udr"] for r in runs])
  picked = mig[int(np.argmax(udr))]
  rho = scipy.stats.spearmanr(udr, mig).statistic if len(runs) > 2 else float("nan")
  return {"seeds": len(runs), "rho": rho, "picked": picked, "median": float(np.median(mig)),
          "best": float(mig.max()), "hit": float(picked == mig.max())}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("curves")
  parser.add_argument("--steps", type=int, default=None, help="one evaluated step (default: all)")
  args = parser.parse_args(argv)
  found = {key: cell_summary(runs) for key, runs in sorted(cells(args.curves, args.steps).items())}
  for step in sorted({k[2] for k in found}):
    print(f"\nstep {step}\n\n| method | β | seeds | Spearman ρ(UDR, MIG) | MIG of the UDR pick | "
          "median MIG | best MIG | pick = best |\n|---|---|---|---|---|---|---|---|")
    for (method, beta, s), c in found.items():
      if s == step:
        print(f"| {method} | {beta:g} | {c['seeds']} | {c['rho']:+.2f} | {c['picked']:.3f} | "
              f"{c['median']:.3f} | {c['best']:.3f} | {'yes' if c['hit'] else 'no'} |")
  print()
  for method in sorted({k[0] for k in found}):
    mine = [c for k, c in found.items() if k[0] == method]
    rhos = [c["rho"] for c in mine if not np.isnan(c["rho"])]
    above = sum(c["picked"] > c["median"] for c in mine)
    print(f"{method}: {len(mine)} cells; mean ρ {statistics.mean(rhos) if rhos else float('nan'):+.2f}; "
          f"the pick above the median in {above}, the best in {int(sum(c['hit'] for c in mine))}; "
          f"mean MIG of the pick {statistics.mean(c['picked'] for c in mine):.3f} against the "
          f"median {statistics.mean(c['median'] for c in mine):.3f}")


if __name__ == "__main__":
  main()
