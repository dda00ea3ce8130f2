"""benchmarks/gpu/paper_sweep.sh: its CPU smoke run, and the plan it makes."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from train_test import ROOT


def load_driver():
  spec = importlib.util.spec_from_file_location("paper_sweep",
                                                ROOT / "benchmarks" / "gpu" / "paper_sweep.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def measured(t_full, t_small, eval_seconds=2.0):
  return {"members": 24, "population_step_seconds": t_full, "small_population_members": 4,
          "small_population_step_seconds": t_small, "eval_first_seconds": 1.0,
          "eval_seconds_per_run": eval_seconds}


@pytest.mark.parametrize("t_full,t_small,left,betas,steps", [
    # The whole grid fits 18,000 steps: all of it.
    (0.01, 0.004, 400.0, [1, 2, 4, 6, 8, 10], 18_000),
    # Only 3 β fit 18,000 steps at t(12) = 0.004 + 0.016·8/20 = 0.0104 s.
    (0.02, 0.004, 18_000 * 0.0104 + 12 * 2 + 1 + 1, [1, 6, 10], 18_000),
    # Not even β=6 alone: as many steps as fit, rounded down to 100s.
    (0.5, 0.05, 300.0, [6], 5_800),
])
def test_plan_prefers_the_papers_steps_then_the_most_betas(t_full, t_small, left, betas, steps):
  driver = load_driver()
  plan = driver.plan(driver.settings(False), measured(t_full, t_small), left, driver.PAPER_STEPS)
  assert plan["betas"] == betas and plan["steps"] == steps
  assert plan["members"] == 4 * len(betas)
  assert plan["steps"] * plan["step_seconds"] + 1.0 + 2.0 * plan["members"] <= left


@pytest.mark.long
def test_smoke_run_writes_every_output(tmp_path):
  """The GPU script end to end at toy size on CPU: tests, measurements, the
  plan, the population sweep, evaluation and the packed outputs."""
  env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
         "PAPER_SWEEP_WORK": str(tmp_path / "work"), "PAPER_SWEEP_BUDGET": "400"}
  result = subprocess.run(["bash", "benchmarks/gpu/paper_sweep.sh", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  out = tmp_path / "out"
  assert {"results.csv", "summary.md", "mig_vs_beta.png", "tc_vs_mig.png", "plan.json",
          "timing.log", "results_paper.tar.gz"} <= {p.name for p in out.iterdir()}
  assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  info = json.loads((out / "plan.json").read_text())
  assert len(rows) == info["plan"]["members"] == 4 and info["plan"]["steps"] == 8
  assert {int(r["steps"]) for r in rows} == {8}
  assert info["measured"]["population_step_seconds"] > 0 and "sweep_command" in info
  log = (out / "timing.log").read_text()
  assert "passed" in log and "done in" in log


def test_other_methods_are_planned_by_grid_position():
  """--methods: each method's i-th grid value goes with the i-th β."""
  driver = load_driver()
  s = driver.settings(False)
  args = driver.sweep_args(s, 100, [0, 3], ["betatc_vae", "factorvae", "annealed_vae"],
                           ROOT / "r", ROOT / "o")
  assert args[args.index("--betas") + 1] == "1,6"
  values = [args[i + 1] for i, a in enumerate(args) if a == "--values"]
  assert values == ["factorvae=10,40", "annealed_vae=5,50"]
  assert driver.index_priority(s)[0] == s["betas"].index(6.0)
