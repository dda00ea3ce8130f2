"""The GPU job (steps (c)–(e) of paper_sweep.sh): the next runs of the queue,
trained and evaluated before the deadline, each row written as it is made.

  python benchmarks/gpu/paper_sweep.py [--smoke] --out DIR [--queue Q] [--results CSV]

1. Reads the queue (benchmarks/gpu/queue.toml) and the finished runs
   (results_paper/results.csv): the pending runs, in queue order.
2. Measures on this device the population step at two sizes (and the
   compile time), and one run's evaluation (``measure``).
3. Plans the longest prefix of the pending runs whose training and
   evaluation fit before the deadline less ``--margin`` (``gpu_queue.fit``).
4. Trains each population of the plan with ``on_non_finite="freeze"``,
   no checkpoints (the machine's disk does not outlive the job) and a
   deadline that keeps time for the evaluations and the later populations:
   a slower step than measured stops training at the next logging boundary
   (every 500 steps), and the rows say the true step count.
5. Evaluates each run as soon as its population stops, and appends its row
   to DIR/rows.csv and its whole evaluation to DIR/evals.jsonl at once, so a
   job cut off keeps every run it evaluated.

DIR also gets plan.json (the queue state, measurements, plan and timings,
rewritten at each stage) and profile.json (the compiled step's FLOPs and
bytes from XLA's cost analysis, achieved FLOP/s and the fraction of the
TF32 peak). Merge a job's DIR with ``python benchmarks/gpu/merge.py DIR``.

The deadline is $PAPER_SWEEP_DEADLINE (epoch seconds; the shell script sets
it to its start + 540 s) or now + --budget. ``--smoke`` runs the same steps
at toy size on CPU (B = 32, 5,760 images, 8 steps, S = 300).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import gpu_queue  # noqa: E402  (puts the repository and scripts/ on sys.path)

from betatc_jax import state as state_lib
from betatc_jax import step as step_lib
from betatc_jax import workdir as wd
from betatc_jax import members as members_lib
from betatc_jax import host_memory  # noqa: E402

host_memory.retain_freed_memory()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from betatc_jax import population  # noqa: E402


ROOT = gpu_queue.ROOT
# Dense TF32 peak (no sparsity) by device kind, FLOP/s.
TF32_PEAK = {"H100": 494.7e12, "H200": 494.7e12, "A100": 156e12}
SMOKE = {"subsample": (1, 2, 4, 4, 4), "batch_size": 32, "steps": 8, "eval_samples": 300}
LOG_EVERY = 500          # the logging boundary: where the deadline can stop training
PRECISIONS = ("default", "bfloat16", "tensorfloat32", "float32")


def parse_args(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--smoke", action="store_true", help="toy sizes, for a CPU check")
  parser.add_argument("--out", required=True)
  parser.add_argument("--queue", default=str(gpu_queue.QUEUE))
  parser.add_argument("--results", default=str(ROOT / "results_paper" / "results.csv"),
                      help="the finished runs to skip")
  parser.add_argument("--budget", type=float, default=480.0,
                      help="seconds from now, when $PAPER_SWEEP_DEADLINE is unset")
  parser.add_argument("--margin", type=float, default=30.0,
                      help="seconds kept after the plan's end (loading, writing, slack)")
  parser.add_argument("--max_runs", type=int, default=0, help="plan at most this many (0: no cap)")
  parser.add_argument("--sizes", default="",
                      help="the two population sizes to time (default 4,24; smoke 1,2)")
  parser.add_argument("--matmul_precision", choices=PRECISIONS, default="default",
                      help="jax.default_matmul_precision of training (part of each run's key; "
                           "the estimator and the loss stay float32)")
  return parser.parse_args(argv)


def write_json(path: pathlib.Path, data) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(data, indent=2, default=str))
  os.replace(tmp, path)


def append_line(path: pathlib.Path, text: str) -> None:
  """Appends and syncs: the line survives the job being killed after it."""
  with open(path, "a") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def append_row(path: pathlib.Path, row: dict) -> None:
  import io
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=gpu_queue.ROW_COLUMNS)
  if not path.is_file():
    writer.writeheader()
  writer.writerow(row)
  append_line(path, buffer.getvalue())


def population_base(settings: gpu_queue.Settings, r: gpu_queue.Run, steps: int):
  """The shared config of ``r``'s population, for ``steps`` steps."""
  base = gpu_queue.population_config(settings, r.method, steps)
  base.log_every_steps = min(LOG_EVERY, steps)
  base.checkpoint_every_steps = steps
  return base


def members_of(settings: gpu_queue.Settings, runs) -> list[members_lib.Member]:
  return [gpu_queue.member(settings, r.method, r.value, r.seed) for r in runs]


def step_seconds_of(measured: dict):
  """The measured step time as a function of the population size."""
  return gpu_queue.linear_step_seconds([(p["runs"], p["step_seconds"])
                                        for p in measured["points"]])


def mlp_flops_per_image(params) -> float:
  """Forward + backward FLOPs of the dense layers for one image (3 × 2·in·out)."""
  return sum(6.0 * leaf.shape[0] * leaf.shape[1] for leaf in jax.tree.leaves(params)
             if leaf.ndim == 2)


def measure(settings, runs, dataset, sizes: tuple[int, int], timed: int) -> tuple[dict, dict]:
  """Step seconds of populations of ``sizes`` runs (the first pending
  population's runs, repeated as needed), the compile time, and one run's
  evaluation (twice: the first compiles). Returns (measured, profile)."""
  group = gpu_queue.populations(runs)[0]
  base = population_base(settings, group[0], timed + 1)
  images = jax.device_put(dataset.images)
  step = jax.jit(step_lib.population_step_from_indices, donate_argnums=0)
  points, profile = [], {}
  for k in sizes:
    chosen = [group[i % len(group)] for i in range(k)]
    members = [dataclasses.replace(m, name=f"m{i}") for i, m in
               enumerate(members_of(settings, chosen))]
    configs = members_lib.validate_population(base, members)
    states, keys = state_lib.create_population_state(configs, dataset.observation_shape,
                                                      len(dataset))
    indices = jax.device_put(members_lib.member_batch_indices(
        [c.seed for c in configs], 0, timed + 1, base.batch_size, len(dataset)))
    t0 = time.perf_counter()
    compiled = step.lower(states, images, indices, np.int32(0), keys).compile()
    compile_seconds = time.perf_counter() - t0
    states, m = compiled(states, images, indices, np.int32(0), keys)
    jax.block_until_ready(m["loss"])
    t0 = time.perf_counter()
    for t in range(1, timed + 1):
      states, m = compiled(states, images, indices, np.int32(t), keys)
    jax.block_until_ready(m["loss"])
    seconds = (time.perf_counter() - t0) / timed
    points.append({"runs": k, "step_seconds": seconds, "compile_seconds": compile_seconds})
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = mlp_flops_per_image(state_lib.unstack(states.params, 0)) * base.batch_size * k
    kind = jax.devices()[0].device_kind
    peak = next((v for name, v in TF32_PEAK.items() if name in kind), None)
    profile[str(k)] = {"step_seconds": seconds, "xla_flops": cost.get("flops"),
                       "xla_bytes_accessed": cost.get("bytes accessed"),
                       "dense_layer_flops": flops, "achieved_tflops": flops / seconds / 1e12,
                       "tf32_peak_fraction": flops / seconds / peak if peak else None}
    del states
  one = members_lib.member_config(base, members_of(settings, group[:1])[0])
  fresh, _ = state_lib.create_population_state([one], dataset.observation_shape, len(dataset))
  params = jax.device_get(state_lib.unstack(fresh.params, 0))
  eval_times = []
  for _ in range(2):
    t0 = time.perf_counter()
    population.evaluate_member(one, "untrained", params, 0, dataset)
    eval_times.append(time.perf_counter() - t0)
  measured = {"device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind,
              "batch_size": base.batch_size, "population": group[0].population[0],
              "points": points, "compile_seconds": max(p["compile_seconds"] for p in points),
              "eval_first_seconds": eval_times[0], "eval_seconds_per_run": eval_times[1]}
  return measured, profile


def plan_runs(pending, measured: dict, seconds_left: float, max_runs: int) -> list:
  runs = pending[:max_runs] if max_runs else pending
  return gpu_queue.fit(runs, seconds_left, step_seconds_of(measured),
                       measured["eval_seconds_per_run"],
                       measured["compile_seconds"])


def job_id(kind: str, commit: str) -> str:
  now = datetime.datetime.now(datetime.timezone.utc)
  short = kind.split()[-1].lower() if kind else "cpu"
  return f"{now:%Y-%m-%dT%H%MZ}-{short}-{commit[:7] or 'nocommit'}"


def git_commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
  except OSError:
    return ""


def train_and_evaluate(settings, chosen, measured, dataset, work: pathlib.Path, out: pathlib.Path,
                       deadline: float, margin: float, info: dict) -> int:
  """Step 4 and 5 for every population of ``chosen``; returns the rows written."""
  step_seconds = step_seconds_of(measured)
  groups = gpu_queue.populations(chosen)
  eval_seconds = measured["eval_seconds_per_run"]
  written = 0
  precision = (jax.default_matmul_precision(settings.matmul_precision)
               if settings.matmul_precision != "default" else contextlib.nullcontext())
  for i, group in enumerate(groups):
    later = groups[i + 1:]
    reserve = eval_seconds * sum(len(g) for g in groups[i:]) + sum(
        measured["compile_seconds"] + g[0].steps * step_seconds(len(g)) for g in later)
    train_deadline = deadline - margin - reserve
    base = population_base(settings, group[0], group[0].steps)
    members = members_of(settings, group)
    workdir = work / f"population_{i}"
    t0 = time.perf_counter()
    print(f"population {i}: {len(group)} runs ({group[0].population[0]}), {group[0].steps} steps",
          flush=True)
    with precision:
      states, _ = population.train_population(base, members, workdir, dataset=dataset,
                                              on_non_finite="freeze", deadline=train_deadline,
                                              save_checkpoints=False, execution="vmap")
    train_seconds = time.perf_counter() - t0
    frozen = wd.frozen_members(workdir)
    params = jax.device_get(states.params)
    configs = members_lib.validate_population(base, members)
    info["populations"].append({"runs": [r.name for r in group], "train_seconds": train_seconds,
                                "steps": [int(s) for s in states.step], "frozen": frozen})
    for k, (r, config) in enumerate(zip(group, configs)):
      t0 = time.perf_counter()
      result = population.evaluate_member(config, r.name, state_lib.unstack(params, k),
                                          int(states.step[k]), dataset, frozen=frozen.get(r.name))
      row = gpu_queue.result_row(r, result, train_seconds=f"{train_seconds:.1f}",
                                 eval_seconds=f"{time.perf_counter() - t0:.1f}",
                                 device=measured["device_kind"], date=info["date"],
                                 job=info["job"])
      append_row(out / "rows.csv", row)
      append_line(out / "evals.jsonl", json.dumps(
          {"key": dict(r.key), "method": r.method, "experiment": r.experiment,
           "result": result}, default=float) + "\n")
      written += 1
      print(f"  {r.name} step {row['steps']}: "
            + (f"MIG {row['mig']:.3f} TC {row['tc']:.2f}" if row["mig"] != "" else "not evaluated")
            + (f", frozen at step {row['frozen_at_step']}" if row["frozen_at_step"] else ""),
            flush=True)
    write_json(out / "plan.json", info)
  return written


def main(argv=None):
  args = parse_args(argv)
  start = time.time()
  deadline = float(os.environ.get("PAPER_SWEEP_DEADLINE", start + args.budget))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(os.environ.get("PAPER_SWEEP_WORK", ROOT / "workdirs" / "paper_sweep"))
  if work.exists():
    shutil.rmtree(work)

  overrides = dict(SMOKE) if args.smoke else {}
  settings, runs = gpu_queue.load_queue(args.queue, overrides=overrides,
                                        matmul_precision=args.matmul_precision)
  done_rows = gpu_queue.read_rows(pathlib.Path(args.results))
  pending = gpu_queue.pending(runs, done_rows)
  commit = git_commit()
  kind = jax.devices()[0].device_kind
  info = {"job": job_id(kind, commit), "commit": commit,
          "date": datetime.date.today().isoformat(), "device_kind": kind,
          "settings": dataclasses.asdict(settings), "queue_runs": len(runs),
          "pending_runs": len(pending), "populations": []}
  print(f"queue: {len(runs)} runs, {len(pending)} pending", flush=True)
  if not pending:
    info["plan"] = []
    write_json(out / "plan.json", info)
    print("the queue is done: nothing to train", flush=True)
    return 0

  from betatc_jax.data import load_dataset
  t0 = time.time()
  dataset = load_dataset(settings.dataset, subsample=tuple(settings.subsample))
  print(f"dataset: {len(dataset)} images in {time.time() - t0:.0f} s", flush=True)
  sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (
      (1, 2) if args.smoke else (4, 24))
  measured, profile = measure(settings, pending, dataset, sizes, timed=2 if args.smoke else 20)
  write_json(out / "profile.json", profile)
  print("measured " + json.dumps(measured), flush=True)
  seconds_left = deadline - time.time() - args.margin
  chosen = plan_runs(pending, measured, seconds_left, args.max_runs)
  info.update(measured=measured, seconds_left=seconds_left,
              plan=[{"name": r.name, "experiment": r.experiment, "steps": r.steps}
                    for r in chosen])
  write_json(out / "plan.json", info)
  print(f"plan: {len(chosen)} runs in {len(gpu_queue.populations(chosen))} populations: "
        + ", ".join(r.name for r in chosen), flush=True)
  if not chosen:
    print("no time left for the next run", flush=True)
    return 1
  written = train_and_evaluate(settings, chosen, measured, dataset, work, out, deadline,
                               args.margin / 2, info)
  info.update(rows_written=written, total_seconds=time.time() - start)
  write_json(out / "plan.json", info)
  print(f"done in {time.time() - start:.0f} s: {written} rows in {out / 'rows.csv'}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
