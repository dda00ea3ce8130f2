"""Throughput of one population of 8 members: 1 process × 4 simulated CPU
devices against 2 processes × 2 over localhost (the same members, mesh and
batches), and so the cost per step of the multi-process path.

  python benchmarks/population_mesh.py [--steps 200]

Each layout trains from scratch in a fresh workdir; the figure is the
steps/s of the logged intervals after the first (which holds compilation),
as ``train_population`` writes them into metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def config(steps: int, port: int | None, process_id: int):
  sys.path.insert(0, str(ROOT))
  from configs import default
  base = default.get_config()
  base.batch_size, base.num_train_steps = 64, steps
  base.log_every_steps = base.checkpoint_every_steps = steps // 4
  base.progress_bar, base.eval.at_end = False, False
  if port:
    base.distributed.coordinator_address = f"127.0.0.1:{port}"
    base.distributed.num_processes, base.distributed.process_id = 2, process_id
  return base


def worker(workdir: str, steps: int, port: int, process_id: int) -> None:
  from betatc_jax import members as members_lib, population
  members = [members_lib.Member(f"m{k}", {"seed": k, "objective.beta": 1.0 + k}) for k in range(8)]
  population.train_population(config(steps, port or None, process_id), members, workdir)


def launch(workdir, steps, devices, port=0, process_id=0):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.Popen([sys.executable, __file__, "--worker", workdir, str(steps), str(port),
                           str(process_id)], env=env)


def steps_per_second(workdir: pathlib.Path) -> float:
  rows = [json.loads(line) for line in (workdir / "members" / "m0" / "metrics.jsonl")
          .read_text().splitlines()]
  later = [r["steps_per_sec"] for r in rows[1:]]
  return sum(later) / len(later)


def main() -> None:
  if sys.argv[1:2] == ["--worker"]:
    worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    return
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    assert launch(str(tmp / "one"), args.steps, 4).wait() == 0
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    procs = [launch(str(tmp / "two"), args.steps, 2, port, p) for p in range(2)]
    assert all(p.wait() == 0 for p in procs)
    one, two = steps_per_second(tmp / "one"), steps_per_second(tmp / "two")
  print(json.dumps({"one_process_x4_steps_per_s": round(one, 2),
                    "two_processes_x2_steps_per_s": round(two, 2),
                    "ratio_two_over_one": round(two / one, 3),
                    "extra_ms_per_step": round(1000 / two - 1000 / one, 2)}))


if __name__ == "__main__":
  main()
