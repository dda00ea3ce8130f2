"""A population of K runs vs the same K runs one after another.

Both sides run the same jitted ``train_lib.train_step`` on batches gathered
on the device from the same indices (``population.member_batch_indices``);
the population is ``vmap``-ed over its K members (``population_step_from_indices``),
the sequential side steps each member's state in turn. Interleaved, after
warm-up; the median of the repeats. Members mix β-VAE and β-TCVAE (MSS and
MWS) at several β, as the sweep does.

Settings: the CPU sweep's (paper MLP, B=256) and the paper's (B=2048).
Also measured, at the CPU setting:
  * vmap over one member vs the plain single-run step (``train.py``'s path);
  * data on the device (indices sent once per logging interval) vs batches
    gathered on the host and copied each step.

  python benchmarks/population_throughput.py            # K=4; 3 repeats
  python benchmarks/population_throughput.py --quick    # 2 repeats, fewer steps
  python benchmarks/population_throughput.py --members 24 --steps 20   # e.g. on a GPU

Prints a table and `ratio pop/seq B=256=X B=2048=X vmap1/plain=X device/host=X`
(img/s of the first over the second).
"""

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from betatc_jax import host_memory  # noqa: E402

if __name__ == "__main__":
  host_memory.retain_freed_memory()     # as train.py and the sweep run

import jax  # noqa: E402
import numpy as np  # noqa: E402

from betatc_jax import default_config, population, train_lib  # noqa: E402
from betatc_jax.data.ground_truth import gather_rows  # noqa: E402


def parse_args(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--steps", type=int, default=0, help="steps per repeat (0: by setting)")
  parser.add_argument("--batch_sizes", default="256,2048")
  parser.add_argument("--subsample", default="1,1,2,2,2")
  return parser.parse_args(argv)


def make_members(k: int) -> list[population.Member]:
  kinds = [("beta_vae", "mss"), ("betatc", "mss"), ("betatc", "mws")]
  out = []
  for i in range(k):
    name, estimator = kinds[i % 3]
    out.append(population.Member(f"m{i}", {"seed": i, "objective.name": name,
                                           "objective.beta": float(1 + i % 10),
                                           "objective.estimator": estimator}))
  return out


def timed(fn, repeats: int) -> float:
  """Median seconds of ``fn()`` (which blocks) over ``repeats``, after one warm-up."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def setting(dataset, batch_size: int, k: int, steps: int, repeats: int, extras: bool):
  base = default_config.get_config()
  base.batch_size = batch_size
  base.model.arch = "mlp"
  members = make_members(k)
  configs = population.validate_population(base, members)
  states, keys = population.create_population_state(configs, dataset.observation_shape,
                                                    len(dataset))
  images = jax.device_put(dataset.images)
  indices = jax.device_put(population.member_batch_indices(
      [c.seed for c in configs], 0, steps, batch_size, len(dataset)))
  pop_step = jax.jit(population.population_step_from_indices)
  single_step = jax.jit(lambda s, imgs, rows, key: train_lib.train_step(s, imgs[rows], key))
  singles = [population.unstack(states, i) for i in range(k)]

  def run_population():
    s = states
    for t in range(steps):
      s, m = pop_step(s, images, indices, np.int32(t), keys)
    jax.block_until_ready(m["loss"])

  def run_sequential():
    for i in range(k):
      s = singles[i]
      for t in range(steps):
        s, m = single_step(s, images, indices[t, i], keys[i])
      jax.block_until_ready(m["loss"])

  images_total = k * steps * batch_size
  results = {"population": images_total / timed(run_population, repeats),
             "sequential": images_total / timed(run_sequential, repeats)}
  if extras:
    one = population.unstack(states, np.arange(1))
    host_indices = np.asarray(indices)
    pop_batch_step = jax.jit(population.population_step)

    def run_vmap_one():
      s = one
      for t in range(steps):
        s, m = pop_step(s, images, indices[:, :1], np.int32(t), keys[:1])
      jax.block_until_ready(m["loss"])

    def run_plain_one():
      s = singles[0]
      for t in range(steps):
        s, m = single_step(s, images, indices[t, 0], keys[0])
      jax.block_until_ready(m["loss"])

    def run_host_data():
      s = states
      for t in range(steps):
        batch = np.stack([gather_rows(dataset.images, rows) for rows in host_indices[t]])
        s, m = pop_batch_step(s, jax.device_put(batch), keys)
      jax.block_until_ready(m["loss"])

    one_images = steps * batch_size
    results.update(vmap_one=one_images / timed(run_vmap_one, repeats),
                   plain_one=one_images / timed(run_plain_one, repeats),
                   host_data=images_total / timed(run_host_data, repeats))
  return results


def main(argv=None):
  args = parse_args(argv)
  from betatc_jax.data import load_dataset
  dataset = load_dataset("dsprites", subsample=tuple(int(v) for v in args.subsample.split(",")))
  repeats = 2 if args.quick else 3
  print(f"devices: {jax.devices()}; K={args.members}; dataset {len(dataset)} images")
  ratios = {}
  for batch_size in (int(b) for b in args.batch_sizes.split(",")):
    steps = args.steps or (4 if batch_size <= 256 else 2) * (1 if args.quick else 2)
    r = setting(dataset, batch_size, args.members, steps, repeats, extras=batch_size <= 256)
    print(f"B={batch_size}: " + "  ".join(f"{k} {v:,.0f} img/s" for k, v in r.items()), flush=True)
    ratios[f"pop/seq B={batch_size}"] = r["population"] / r["sequential"]
    if "vmap_one" in r:
      ratios["vmap1/plain"] = r["vmap_one"] / r["plain_one"]
      ratios["device/host"] = r["population"] / r["host_data"]
  print("ratio " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
  main()
