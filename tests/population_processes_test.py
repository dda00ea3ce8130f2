"""Populations across processes: 2 processes × 2 simulated CPU devices over
localhost train 8 members as 1 process × 4 devices does; a lost process ends
the run with an error that names it; a relaunch resumes exactly; a process
count that does not split the members is refused before any work."""

import os
import signal
import socket
import sys
import textwrap

import jax
import numpy as np
import pytest

from betatc_jax import workdir as wd
from betatc_jax import members as members_lib
from betatc_jax import mesh
from betatc_jax import population
from children import Child, finish
from population_test import assert_rows_close
from train_test import ROOT, checkpoint_steps, small_config

# Eight runs: seeds, β, estimators, objectives and learning rates differ.
MEMBERS = [members_lib.Member(f"m{k}", {"seed": k % 3, "objective.beta": 1.0 + k,
                                       "objective.estimator": ("mss", "mws")[k % 2],
                                       "objective.name": ("betatc", "beta_vae")[k // 6],
                                       "learning_rate": 3e-4 if k % 4 else 1e-4})
           for k in range(8)]

_RUNNER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax
    from betatc_jax import mesh, population
    from population_processes_test import MEMBERS, config
    workdir, port, process_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for steps in map(int, sys.argv[4].split(",")):
      if steps < 0:                       # this process dies here, unannounced
        os.kill(os.getpid(), signal.SIGKILL)
      try:
        population.train_population(config(steps, port, process_id), MEMBERS, workdir,
                                    execution="vmap")
      except mesh.LostProcessError as e:
        print("LOST:", e, flush=True)
        os._exit(3)
    print("DONE", jax.process_count(), jax.device_count(), flush=True)
""")


def config(steps, port="", process_id=0):
  """The shared config; with a port, process ``process_id`` of 2 over localhost."""
  base = small_config(num_train_steps=steps, log_every_steps=2, checkpoint_every_steps=4,
                      learning_rate=3e-4)
  if port:
    base.distributed.coordinator_address = f"127.0.0.1:{port}"
    base.distributed.num_processes, base.distributed.process_id = 2, process_id
    base.distributed.heartbeat_timeout_seconds = 20
  return base


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, phases, devices, port="", process_id=0):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  code = _RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"))
  return Child([sys.executable, "-c", code, str(workdir), str(port), str(process_id),
                ",".join(map(str, phases))], watch=[workdir], env=env)


def launch_two(workdir, phases_of):
  port = free_port()
  return [launch(workdir, phases_of[p], 2, port, p) for p in range(2)]


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_after_a_lost_process(tmp_path):
  """1 process × 4 devices trains 12 steps. 2 processes × 2 devices train 4
  steps; process 1 is then killed (SIGKILL) and process 0, starting the
  next call, ends with ``LostProcessError`` naming process 1 and the
  checkpoint at step 4. Both relaunched, they resume there and finish: every
  member's logged losses (steps 2, 4, ..., 12, before and after the kill)
  equal the single process's to the multi-device tolerance of
  tests/population_test.py (rtol 1e-4, atol 1e-3)."""
  one = launch(tmp_path / "one", [12], 4)
  two = launch_two(tmp_path / "two", {0: [4, 12], 1: [4, -1]})
  (rc0, out0, err0), (rc1, _, _) = finish(two)
  assert rc1 == -signal.SIGKILL
  assert rc0 == 3, err0[-4000:]
  lost = next(line for line in out0.splitlines() if line.startswith("LOST:"))
  assert "process 1 of 2 stopped responding" in lost and "the last checkpoint is step 4" in lost
  assert checkpoint_steps(tmp_path / "two") == [4]

  again = finish(launch_two(tmp_path / "two", {0: [12], 1: [12]}))
  assert all(rc == 0 for rc, _, _ in again), [err[-4000:] for _, _, err in again]
  assert "DONE 2 4" in again[0][1]
  (rc, out, err), = finish([one])
  assert rc == 0 and "DONE 1 4" in out, err[-4000:]
  for member in MEMBERS:
    assert_rows_close(wd.member_dir(tmp_path / "one", member.name),
                      wd.member_dir(tmp_path / "two", member.name), rtol=1e-4, atol=1e-3)


def test_members_must_split_over_the_processes():
  """The split is checked before any work, with the numbers in the message."""
  with pytest.raises(ValueError, match="3 members cannot be split over 2 processes"):
    mesh.check_process_split(3, 1, process_count=2, local_device_count=2)
  with pytest.raises(ValueError, match="split over 4 devices"):
    mesh.check_process_split(8, 4, process_count=2, local_device_count=2)
  mesh.check_process_split(8, 2, process_count=2, local_device_count=2)
  mesh.check_process_split(3, 4, process_count=1, local_device_count=4)


@pytest.mark.slow
def test_the_sweep_on_two_processes_equals_one(tmp_path):
  """``python -m betatc_jax.sweep`` with ``--config.base.distributed.*`` on 2
  processes (one run each): each process evaluates its run and exports its checkpoint, and
  process 0 alone writes results.csv, whose metrics equal the one-process
  sweep's (rtol 1e-4: the same runs, rounded on other devices). Each run's
  exported checkpoint, written by the process that holds it, equals the
  one-process sweep's."""
  import csv

  args = ["--config.steps=4", "--config.eval_steps=", "--config.betas=4", "--config.seeds=0",
          "--config.base.batch_size=32", "--config.base.dataset.subsample=1,2,4,4,4",
          "--config.base.eval.num_samples=200", "--config.other_metrics=False"]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  port = free_port()
  command = [sys.executable, "-m", "betatc_jax.sweep", *args]
  procs = [Child(
      command + [f"--config.root={tmp_path / 'two'}", f"--config.out={tmp_path / f'out{p}'}",
                 f"--config.base.distributed.coordinator_address=127.0.0.1:{port}",
                 "--config.base.distributed.num_processes=2",
                 f"--config.base.distributed.process_id={p}"],
      watch=[tmp_path / "two"], env=env, cwd=ROOT) for p in range(2)]
  procs.append(Child(command + [f"--config.root={tmp_path / 'one'}",
                                f"--config.out={tmp_path / 'one_out'}"],
                     watch=[tmp_path / "one"], env=env, cwd=ROOT))
  done = finish(procs)
  assert all(rc == 0 for rc, _, _ in done), [err[-4000:] for _, _, err in done]
  assert not (tmp_path / "out1").exists()              # the report is written once
  read = lambda path: list(csv.DictReader(open(path)))
  two, one = read(tmp_path / "out0" / "results.csv"), read(tmp_path / "one_out" / "results.csv")
  assert [r["method"] for r in two] == [r["method"] for r in one] == ["beta_vae", "betatc_vae"]
  for a, b in zip(two, one):
    for key in ("mig", "mig_with_shape", "tc", "mi", "dim_kl", "log_px"):
      assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-5), key
  # Each exported run is an ordinary single-run checkpoint, equal to the one-process export.
  from betatc_jax import checkpointing
  for run in ("beta_vae_beta4_seed0", "betatc_vae_beta4_seed0"):
    trees = []
    for root in ("two", "one"):
      manager = checkpointing.make_manager(tmp_path / root / "members" / run, 1)
      trees.append(manager.restore(4, args=checkpointing.ocp.args.Composite(
          default=checkpointing.ocp.args.StandardRestore()))["default"])
      manager.close()
    # Adam may step a near-zero gradient entry either way: within two steps
    # at lr 1e-3, and 99.9% of the entries to rtol 1e-4.
    for a, b in zip(*(jax.tree.leaves(t["params"]) for t in trees)):
      np.testing.assert_allclose(a, b, atol=2e-3)
      assert np.mean(np.isclose(a, b, rtol=1e-4, atol=1e-6)) >= 0.999
