"""Steps (c)–(f) of paper_sweep.sh: measure, plan the largest sweep that fits
the time left, run it as one population, pack the outputs into --out.

  python benchmarks/gpu/paper_sweep.py [--smoke] --out DIR

The deadline is $PAPER_SWEEP_DEADLINE (epoch seconds; the shell script sets
it to its own start + 540 s) or now + --budget.

``--methods`` (default beta_vae,betatc_vae) takes scripts/sweep.py's methods;
the grid position of each value is planned like the β at that position.

Plan: the paper's budget (18,000 steps at B=2048) comes first, then the
size of the grid. With the measured step times of the whole grid (β ∈ {1, 2,
4, 6, 8, 10} × {β-VAE, β-TCVAE} × seeds 0, 1: 24 runs) and of β=6 alone (4
runs), interpolated linearly in the number of runs, and the measured
evaluation time per run, it keeps the most β values (dropped in the order 8,
2, 4, 10, 1; β=6 stays) at which --min_steps (default 18,000) fit; if even
β=6 alone does not fit, it trains β=6 for as many steps (a multiple of 100)
as fit. The choice and every measurement go to plan.json.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from betatc_jax import host_memory  # noqa: E402

host_memory.retain_freed_memory()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from betatc_jax import evaluate, population, train_lib  # noqa: E402

BETA_PRIORITY = [6.0, 1.0, 10.0, 4.0, 2.0, 8.0]
PAPER_STEPS = 18_000
# Dense TF32 peak (no sparsity) by device kind, FLOP/s.
TF32_PEAK = {"H100": 494.7e12, "H200": 494.7e12, "A100": 156e12}


def parse_args(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--smoke", action="store_true", help="toy sizes, for a CPU check")
  parser.add_argument("--methods", default="beta_vae,betatc_vae",
                      help="as scripts/sweep.py's; each method's grid position i is planned "
                           "like the i-th β (the baselines' grids: sweep.METHODS)")
  parser.add_argument("--out", required=True)
  parser.add_argument("--budget", type=float, default=480.0,
                      help="seconds from now, when $PAPER_SWEEP_DEADLINE is unset")
  parser.add_argument("--min_steps", type=int, default=PAPER_STEPS)
  parser.add_argument("--margin", type=float, default=60.0,
                      help="seconds kept for compiling, the final checkpoint and packing")
  return parser.parse_args(argv)


def settings(smoke: bool) -> dict:
  if smoke:
    return {"batch_size": 32, "subsample": [1, 2, 4, 4, 4], "betas": [1.0, 6.0], "seeds": [0],
            "eval_samples": 300, "max_steps": 8, "min_steps": 2, "timed_steps": 2}
  return {"batch_size": 2048, "subsample": [1, 1, 1, 1, 1], "betas": [1.0, 2.0, 4.0, 6.0, 8.0, 10.0],
          "seeds": [0, 1], "eval_samples": 10_000, "max_steps": PAPER_STEPS, "min_steps": None,
          "timed_steps": 10}


def index_priority(s: dict) -> list[int]:
  """Grid positions in the order the planner keeps them (those of BETA_PRIORITY)."""
  return [s["betas"].index(b) for b in BETA_PRIORITY if b in s["betas"]]


def sweep_args(s: dict, steps: int, indices, methods: list[str], root: pathlib.Path,
               out: pathlib.Path) -> list[str]:
  """scripts/sweep.py's arguments for grid positions ``indices`` of every method."""
  import sweep
  values = []
  for m in methods:
    if sweep.METHODS[m].param != "beta":
      grid = sweep.METHODS[m].grid
      values += ["--values", f"{m}=" + ",".join(f"{grid[i]:g}" for i in indices)]
  return ["--steps", str(steps), "--eval_steps", "", "--methods", ",".join(methods),
          "--betas", ",".join(f"{s['betas'][i]:g}" for i in indices), *values,
          "--seeds", ",".join(map(str, s["seeds"])), "--batch_size", str(s["batch_size"]),
          "--subsample", ",".join(map(str, s["subsample"])), "--eval_samples", str(s["eval_samples"]),
          "--checkpoint_every", str(steps), "--skip_other_metrics", "--no_export",
          "--root", str(root), "--out", str(out)]


def mlp_flops_per_image(params) -> float:
  """Forward + backward FLOPs of the dense layers for one image (3 × 2·in·out)."""
  return sum(6.0 * leaf.shape[0] * leaf.shape[1] for leaf in jax.tree.leaves(params)
             if leaf.ndim == 2)


def timed_steps(step, state, num: int) -> float:
  """Seconds per call of ``step(state, t) -> (state, metrics)`` after one warm-up."""
  state, m = step(state, 0)
  jax.block_until_ready(m["loss"])
  t0 = time.perf_counter()
  for t in range(1, num + 1):
    state, m = step(state, t)
  jax.block_until_ready(m["loss"])
  return (time.perf_counter() - t0) / num


def measure(s: dict, sweep, dataset, methods: list[str]) -> dict:
  """(c): single-run and full-grid population step times, one run's evaluation.

  With FactorVAE in ``methods``, its runs (a second population) are counted
  at the cost of the others'."""
  def grid_members(indices):
    args = sweep.parse_args(sweep_args(s, 1, indices, methods, ROOT / "unused", ROOT / "unused"))
    groups = sweep.members(args)
    plain = groups.get(pathlib.Path(args.root)) or next(iter(groups.values()))
    return sweep.base_config(args, 1), plain, sum(len(g) for g in groups.values())

  base, members, num_members = grid_members(list(range(len(s["betas"]))))
  configs = population.validate_population(base, members)
  b, n = s["batch_size"], len(dataset)
  images = jax.device_put(dataset.images)
  steps = s["timed_steps"] + 1
  pop_step = jax.jit(population.population_step_from_indices)

  def population_seconds(chosen):
    states, keys = population.create_population_state(chosen, dataset.observation_shape, n)
    indices = jax.device_put(population.member_batch_indices(
        [c.seed for c in chosen], 0, steps, b, n))
    seconds = timed_steps(lambda st, t: pop_step(st, images, indices, np.int32(t), keys), states,
                          s["timed_steps"])
    return seconds, states, keys, indices

  t_pop, states, keys, indices = population_seconds(configs)
  single_step = jax.jit(lambda st, imgs, rows, key: train_lib.train_step(st, imgs[rows], key))
  one = next((k for k, c in enumerate(configs) if c.objective.name == "betatc"), 0)
  single = population.unstack(states, one)
  t_single = timed_steps(lambda st, t: single_step(st, images, indices[t, one], keys[one]), single,
                         s["timed_steps"])
  small_base, small_members, _ = grid_members([index_priority(s)[0]])
  small = population.validate_population(small_base, small_members)
  t_small = population_seconds(small)[0] if len(small) < len(configs) else t_pop
  flops = mlp_flops_per_image(single.params) * b
  kind = jax.devices()[0].device_kind
  peak = next((v for k, v in TF32_PEAK.items() if k in kind), None)
  del states, indices, images
  # Evaluated twice: the first includes compiling (on an H200, 32 s of which
  # ~20 s compilation), the rest of the runs cost what the second does.
  eval_times = []
  for _ in range(2):
    t0 = time.perf_counter()
    evaluate.evaluate_params(configs[one], jax.device_get(single.params), dataset, step=0,
                             other_metrics=False)
    eval_times.append(time.perf_counter() - t0)
  return {"device": str(jax.devices()[0]), "device_kind": kind, "members": num_members,
          "batch_size": b, "single_step_seconds": t_single,
          "single_images_per_sec": b / t_single,
          "single_tflops": flops / t_single / 1e12,
          "single_tf32_peak_fraction": (flops / t_single / peak) if peak else None,
          "population_step_seconds": t_pop,
          "small_population_members": len(small), "small_population_step_seconds": t_small,
          "population_images_per_sec": b * len(configs) / t_pop,
          "population_vs_single_speedup": t_single * len(configs) / t_pop,
          "eval_first_seconds": eval_times[0], "eval_seconds_per_run": eval_times[1]}


def plan(s: dict, measured: dict, seconds_left: float, min_steps: int) -> dict:
  """(d): the most grid positions (β values), then the most steps, that fit ``seconds_left``."""
  k_full, per_index = measured["members"], measured["members"] // len(s["betas"])
  priority = index_priority(s)
  chosen = None
  for count in range(len(s["betas"]), 0, -1):
    indices = sorted(priority[:count])
    k = per_index * len(indices)
    k_small, t_small = measured["small_population_members"], measured["small_population_step_seconds"]
    t_full = measured["population_step_seconds"]
    step_seconds = t_small + (t_full - t_small) * (k - k_small) / max(k_full - k_small, 1)
    eval_seconds = measured.get("eval_first_seconds", 0.0) + measured["eval_seconds_per_run"] * k
    train_seconds = seconds_left - eval_seconds
    steps = int(min(s["max_steps"], max(0.0, train_seconds) / step_seconds))
    steps = steps - steps % 100 if steps >= 200 else steps
    chosen = {"indices": indices, "betas": [s["betas"][i] for i in indices], "members": k,
              "steps": steps, "step_seconds": step_seconds, "seconds_left": seconds_left}
    if steps >= min_steps:
      break
  return chosen


def pack(root: pathlib.Path, results: pathlib.Path, out: pathlib.Path, extra: dict) -> None:
  """(f): the small outputs as files, everything else in one tar.gz."""
  (results / "plan.json").write_text(json.dumps(extra, indent=2))
  evals = {p.parent.parent.name: json.loads(p.read_text())
           for p in sorted(root.glob("**/members/*/evals/step_*.json"))}
  (results / "evals.json").write_text(json.dumps(evals, indent=1))
  for name in ("results.csv", "summary.md", "mig_vs_beta.png", "tc_vs_mig.png", "methods.png",
               "plan.json"):
    if (results / name).is_file():
      shutil.copyfile(results / name, out / name)
  with tarfile.open(out / "results_paper.tar.gz", "w:gz") as tar:
    tar.add(results, arcname="results_paper")


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  deadline = float(os.environ.get("PAPER_SWEEP_DEADLINE", start + args.budget))
  s = settings(args.smoke)
  min_steps = s["min_steps"] or args.min_steps
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(os.environ.get("PAPER_SWEEP_WORK", ROOT / "workdirs" / "paper_sweep"))
  if work.exists():
    shutil.rmtree(work)
  root, results = work / "runs", work / "results_paper"
  import sweep
  from betatc_jax.data import load_dataset

  t0 = time.time()
  dataset = load_dataset("dsprites", subsample=tuple(s["subsample"]))
  print(f"dataset: {len(dataset)} images in {time.time() - t0:.0f} s", flush=True)
  methods = args.methods.split(",")
  unknown = sorted(set(methods) - set(sweep.METHODS))
  if unknown:
    print(f"unknown method(s) {unknown}; choose from {sorted(sweep.METHODS)}", flush=True)
    return 2
  measured = measure(s, sweep, dataset, methods)
  print("measured " + json.dumps(measured), flush=True)
  chosen = plan(s, measured, deadline - time.time() - args.margin, min_steps)
  print("plan " + json.dumps(chosen), flush=True)
  info = {"measured": measured, "plan": chosen, "settings": s, "min_steps": min_steps,
          "methods": methods}
  if chosen["steps"] < 1:
    print("no time left to train anything", flush=True)
    results.mkdir(parents=True, exist_ok=True)
    pack(root, results, out, info)
    return 1
  t0 = time.time()
  argv_sweep = sweep_args(s, chosen["steps"], chosen["indices"], methods, root, results)
  code = sweep.main(argv_sweep)
  info.update(sweep_seconds=time.time() - t0, sweep_command="python scripts/sweep.py " +
              " ".join(argv_sweep), total_seconds=time.time() - start,
              timing=json.loads((root / "timing.json").read_text()))
  try:
    info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip()
  except OSError:
    pass
  pack(root, results, out, info)
  print(f"done in {time.time() - start:.0f} s; outputs in {out}", flush=True)
  return code


if __name__ == "__main__":
  sys.exit(main())
