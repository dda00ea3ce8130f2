"""How far the cheap MIG of the search curves (S = 2,000) is from the full
evaluation (S = 10,000): both, on the same parameters, for members of a
population workdir at its latest checkpoint.

  python scripts/mig_agreement.py --root workdirs/search/r2_b64_3seeds \\
      --out results/cpu_search/mig_agreement.csv

MIG's estimator samples S points (z ~ q(z|x) of S images) and evaluates the
mixture densities over every image; S is its only approximation. Each member
is evaluated at S = 10,000 once and at S = 2,000 with ``--repeats`` evaluation
seeds (the config's ``seed + 7 + r``), which shows the cheap estimate's
spread next to its offset. Writes one CSV row per (member, S, repeat): name,
num_samples, repeat, mig, mig_<factor>..., and prints them.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from betatc_jax import members as members_lib  # noqa: E402
from betatc_jax import population  # noqa: E402
from betatc_jax import state as state_lib  # noqa: E402
from betatc_jax import workdir as wd  # noqa: E402
from betatc_jax.data import dataset_from_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="a population workdir")
  parser.add_argument("--members", default="", help="comma-separated names (default: all)")
  parser.add_argument("--cheap_samples", type=int, default=2_000)
  parser.add_argument("--full_samples", type=int, default=10_000)
  parser.add_argument("--repeats", type=int, default=2, help="evaluation seeds of the cheap MIG")
  parser.add_argument("--out", required=True, help="the CSV to write")
  args = parser.parse_args(argv)

  base, all_members = wd.load_population(args.root)
  members = all_members
  if args.members:
    wanted = args.members.split(",")
    unknown = sorted(set(wanted) - {m.name for m in all_members})
    if unknown:
      raise SystemExit(f"error: no member {unknown} in {args.root}")
    members = [m for m in all_members if m.name in wanted]
  step = wd.latest_step(args.root)
  if step == 0:
    raise SystemExit(f"error: {args.root} has no checkpoint")
  base.num_train_steps = step             # at the checkpoint: restores, trains nothing
  dataset = dataset_from_config(base)
  states, _ = population.train_population(base, all_members, args.root, dataset=dataset)
  index = [next(k for k, m in enumerate(all_members) if m.name == member.name)
           for member in members]
  states = state_lib.unstack(states, np.asarray(index))

  rows = []
  settings = [(args.full_samples, 0)] + [(args.cheap_samples, r) for r in range(args.repeats)]
  for num_samples, repeat in settings:
    config = base.copy_and_resolve_references()
    config.eval.num_samples = num_samples
    # the evaluation's keys come from the member's seed: shift it per repeat
    shifted = [members_lib.Member(m.name, dict(m.overrides, seed=m.overrides.get("seed", 0)
                                              + repeat)) for m in members]
    results = population.evaluate_members(config, shifted, states, dataset, udr_groups=())
    for result in results:
      row = {"name": result["name"], "step": step, "num_samples": num_samples, "repeat": repeat,
             "mig": round(result["mig"], 4)}
      row.update({f"mig_{k}": round(v, 4) for k, v in result["mig_per_factor"].items()})
      rows.append(row)
      print(row, flush=True)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  with open(out, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
