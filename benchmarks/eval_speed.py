"""A whole evaluation of a trained run, phase by phase, with the mixture
densities taken exactly and from the grid (``metrics.grid_density``), in
one process on the same checkpoint.

  .venv/bin/python benchmarks/eval_speed.py --workdir workdirs/default

Writes nothing into the workdir. Prints each phase's seconds both ways
(``eval.json``'s ``phase_seconds``), the numbers that must agree (MIG, TC,
...), and a final line `ratio eval_exact/grid=X mig_exact/grid=Y`. The
default metrics are computed; ``--metrics=`` for only MIG and the ELBO
decomposition. Compilation is paid by a first, discarded evaluation with
``other_metrics=False``.
"""

import argparse
import time

from betatc_jax import evaluate
from betatc_jax.data import dataset_from_config

AGREE = ("mig", "mig_with_shape", "mi", "tc", "dim_kl", "log_px", "kl")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default="workdirs/default")
  parser.add_argument("--metrics", default=None,
                      help="comma-separated metric groups (default: the default ones)")
  args = parser.parse_args()
  config = evaluate.load_config(args.workdir)
  dataset = dataset_from_config(config)
  step, params = evaluate.restore_params(config, args.workdir, dataset.observation_shape)
  groups = (True if args.metrics is None else
            tuple(m.strip() for m in args.metrics.split(",") if m.strip()))
  print(f"step {step} of {args.workdir}: {len(dataset):,} images, "
        f"S = {config.eval.num_samples:,}")
  for density in ("grid", "exact"):                   # compile both paths
    evaluate.evaluate_params(config, params, dataset, step=step, other_metrics=False,
                             density=density)
  results, totals = {}, {}
  for density in ("exact", "grid"):
    start = time.perf_counter()
    results[density] = evaluate.evaluate_params(config, params, dataset, step=step,
                                                other_metrics=groups, density=density)
    totals[density] = time.perf_counter() - start
  exact, grid = (results[d]["phase_seconds"] for d in ("exact", "grid"))
  print(f"{'phase':<22}{'exact s':>9}{'grid s':>9}")
  for phase in exact:
    print(f"{phase:<22}{exact[phase]:>9.2f}{grid[phase]:>9.2f}")
  print(f"{'total':<22}{totals['exact']:>9.2f}{totals['grid']:>9.2f}")
  for key in AGREE:
    print(f"{key:<22}{results['exact'][key]:>12.6f}{results['grid'][key]:>12.6f}")
  print(f"density_max_error (grid): {results['grid']['density_max_error']:.2e} nats")
  print(f"ratio eval_exact/grid={totals['exact'] / totals['grid']:.2f} "
        f"mig_exact/grid={exact['mig'] / grid['mig']:.2f}")


if __name__ == "__main__":
  main()
