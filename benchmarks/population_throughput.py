"""A population of K runs vs the same K runs one after another.

Three ways to train K members (β-VAE and β-TCVAE, MSS and MWS, several β,
as a sweep mixes them) with the paper's MLP, on the same batches:

  * ``plain``: the K single runs one after another, each with the plain
    jitted step ``train.py`` runs (``step_lib.jit_train_step``) on batches
    gathered on the host (the baseline);
  * ``sequential``: the population as ``train_population`` runs it on a CPU
    (``execution.Sequential``: each member's own step in turn, every step);
  * ``vmap``: the population as one vmapped program (``execution.Vmapped``,
    batches gathered on the device), the accelerators' mode.

The repeats interleave the three, after a warm-up each; the median of the
repeats; img/s = K × B × steps / seconds. ``--sweep`` also times a real sweep's training
(``python -m betatc_jax.sweep``, the same K members) per member-step, so the sweep's
own costs (logging, checkpoints, compilation) show beside the benchmark's.

  .venv/bin/python benchmarks/population_throughput.py                    # B=64,256; K=4,12,18
  .venv/bin/python benchmarks/population_throughput.py --quick --members 4
  .venv/bin/python benchmarks/population_throughput.py --sweep --batch_sizes 64 --members 12

Prints a table and one line per batch size:
``ratio pop/seq B=64 K=4=X K=12=X ...`` (the population as it trains, over
the plain runs) and ``ratio vmap/seq B=64 ...``.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from betatc_jax import host_memory  # noqa: E402

if __name__ == "__main__":
  host_memory.retain_freed_memory()     # as train.py and the sweep run

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from betatc_jax import default_config, execution, mesh  # noqa: E402
from betatc_jax import members as members_lib  # noqa: E402
from betatc_jax import state as state_lib  # noqa: E402
from betatc_jax import step as step_lib  # noqa: E402
from betatc_jax.data.ground_truth import gather_rows  # noqa: E402


def parse_args(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--members", default="4,12,18", help="population sizes K")
  parser.add_argument("--batch_sizes", default="64,256")
  parser.add_argument("--steps", type=int, default=0, help="steps per repeat (0: by batch size)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--quick", action="store_true", help="2 repeats, fewer steps")
  parser.add_argument("--subsample", default="1,1,1,2,2", help="the default's 184,320 images")
  parser.add_argument("--sweep", action="store_true",
                      help="also time the sweep's training of the same K members")
  parser.add_argument("--sweep_steps", type=int, default=300)
  return parser.parse_args(argv)


def make_members(k: int) -> list[members_lib.Member]:
  kinds = [("beta_vae", "mss"), ("betatc", "mss"), ("betatc", "mws")]
  out = []
  for i in range(k):
    name, estimator = kinds[i % 3]
    out.append(members_lib.Member(f"m{i}", {"seed": i, "objective.name": name,
                                           "objective.beta": float(1 + i % 10),
                                           "objective.estimator": estimator}))
  return out


def timed(fns: dict, repeats: int) -> dict[str, float]:
  """Median seconds of each ``fn()`` (which blocks) over ``repeats``, after
  one warm-up each; the repeats interleave the functions, so a slow spell
  of the machine falls on all of them."""
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(t) for name, t in times.items()}


def base_config(batch_size: int):
  base = default_config.get_config()
  base.batch_size = batch_size
  base.model.arch = "mlp"
  return base


def setting(dataset, batch_size: int, k: int, steps: int, repeats: int) -> dict[str, float]:
  """img/s of plain, sequential and vmap for K members at batch B."""
  configs = members_lib.validate_population(base_config(batch_size), make_members(k))
  states, keys = state_lib.create_population_state(configs, dataset.observation_shape,
                                                    len(dataset))
  indices = members_lib.member_batch_indices([c.seed for c in configs], 0, steps, batch_size,
                                            len(dataset))                      # [S, K, B]
  live = np.ones(k, bool)
  data_mesh = mesh.data_mesh()
  member_mesh = mesh.member_mesh(k, batch_size)
  replicated = mesh.replicated(data_mesh)
  plain_step = step_lib.jit_train_step(data_mesh,
                                        jax.tree.map(lambda _: replicated,
                                                     state_lib.unstack(states, 0)))
  singles = [jax.device_put(state_lib.unstack(states, i), replicated) for i in range(k)]
  in_turn = execution.Sequential(data_mesh, states, keys, dataset, live, freeze=False)
  vmapped = execution.Vmapped(member_mesh, jax.tree.map(jnp.copy, states), keys, dataset,
                             live, freeze=False, data_on_device=True)   # donates its copy
  data = mesh.data_sharding(data_mesh)
  no_tick = lambda metrics, offset: None

  def run_plain():
    for i in range(k):
      s = singles[i]
      for t in range(steps):
        batch = jax.device_put(gather_rows(dataset.images, indices[t, i]), data)
        s, m = plain_step(s, batch, keys[i])
      singles[i] = s
      jax.block_until_ready(m["loss"])

  def run_sequential():
    in_turn.host_rows(in_turn.run(indices, live, no_tick))

  def run_vmap():
    vmapped.host_rows(vmapped.run(indices, live, no_tick))

  total = k * steps * batch_size
  seconds = timed({"plain": run_plain, "sequential": run_sequential, "vmap": run_vmap}, repeats)
  return {name: total / t for name, t in seconds.items()}


def sweep_member_step(batch_size: int, k: int, steps: int, subsample: str) -> dict[str, float]:
  """A real sweep of K β-VAE / β-TCVAE runs (``python -m betatc_jax.sweep``): its
  training seconds per member-step, with and without the first interval
  (compilation), from its members' logged steps/s."""
  if k % 2:
    raise ValueError("--sweep trains β-VAE and β-TCVAE at K/2 values of β: K must be even")
  betas = ",".join(str(1 + i) for i in range(k // 2))
  with tempfile.TemporaryDirectory() as tmp:
    command = [sys.executable, "-m", "betatc_jax.sweep", f"--config.steps={steps}",
               "--config.eval_steps=", f"--config.betas={betas}", "--config.seeds=0",
               f"--config.base.batch_size={batch_size}",
               f"--config.base.dataset.subsample={subsample}",
               "--config.other_metrics=False", "--config.base.eval.num_samples=100",
               "--config.export=False", f"--config.base.checkpoint_every_steps={steps}",
               f"--config.root={tmp}/root", f"--config.out={tmp}/out"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    timing = json.loads(pathlib.Path(f"{tmp}/root/timing.json").read_text())[str(steps)]
    rows = [json.loads(line) for p in pathlib.Path(f"{tmp}/root/members").glob("*/metrics.jsonl")
            for line in p.read_text().splitlines()]
    members = timing["members"]
    later = [r for r in rows if r["step"] > 50]
    return {"members": members,
            "seconds_per_member_step": timing["train_seconds"] / (members * steps),
            "after_compilation": float(np.median([1.0 / r["steps_per_sec"] / members
                                                  for r in later]))}


def main(argv=None):
  args = parse_args(argv)
  from betatc_jax.data import load_dataset
  dataset = load_dataset("dsprites", subsample=tuple(int(v) for v in args.subsample.split(",")))
  repeats = 2 if args.quick else args.repeats
  sizes = [int(v) for v in args.members.split(",")]
  print(f"devices: {jax.devices()}; dataset {len(dataset)} images; repeats {repeats}", flush=True)
  print("| B | K | plain img/s | sequential img/s | vmap img/s | sequential/plain | vmap/plain |")
  print("|---|---|---|---|---|---|---|", flush=True)
  lines = []
  for batch_size in (int(b) for b in args.batch_sizes.split(",")):
    steps = args.steps or max(2, (1024 // batch_size)) * (1 if args.quick else 2)
    ratios, vmap_ratios = {}, {}
    for k in sizes:
      r = setting(dataset, batch_size, k, steps, repeats)
      ratios[k], vmap_ratios[k] = r["sequential"] / r["plain"], r["vmap"] / r["plain"]
      print(f"| {batch_size} | {k} | {r['plain']:,.0f} | {r['sequential']:,.0f} | "
            f"{r['vmap']:,.0f} | {ratios[k]:.2f} | {vmap_ratios[k]:.2f} |", flush=True)
    lines.append(f"ratio pop/seq B={batch_size} " + " ".join(f"K={k}={v:.2f}"
                                                            for k, v in ratios.items()))
    lines.append(f"ratio vmap/seq B={batch_size} " + " ".join(f"K={k}={v:.2f}"
                                                             for k, v in vmap_ratios.items()))
    if args.sweep:
      for k in sizes:
        s = sweep_member_step(batch_size, k, args.sweep_steps, args.subsample)
        lines.append(f"sweep B={batch_size} K={s['members']}: "
                     f"{s['seconds_per_member_step'] * 1e3:.1f} ms a member-step in all, "
                     f"{s['after_compilation'] * 1e3:.1f} ms after compilation")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
