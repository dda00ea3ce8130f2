"""The GPU job on CPU: the queue (keys, skipping, order, fitting, an empty
queue), the rows it writes, the merge into results_paper/, and the whole
job's smoke run."""

import csv
import importlib
import json
import os
import shutil
import sys

import pytest

import children
from train_test import ROOT

sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
gpu_queue = importlib.import_module("gpu_queue")
merge = importlib.import_module("merge")

# Two populations (the official mode's and the plain one), two runs each.
TEST_QUEUE = """
[defaults]
steps = 100

[[experiment]]
name = "A"
method = "betatc_official"
betas = [6]
seeds = [0, 1]

[[experiment]]
name = "B"
method = "beta_vae"
betas = [1, 4]
seeds = [0]
"""


def committed_rows():
  return gpu_queue.read_rows(ROOT / "results_paper" / "results.csv")


def test_queue_order_and_keys():
  """E1 comes first: the official mode at β = 6, seeds 0–3, with the
  official init, head, likelihood and estimator in each key; then E2 seed
  by seed; no key repeats."""
  settings, runs = gpu_queue.load_queue()
  assert (settings.batch_size, settings.steps, settings.subsample) == (2048, 18_000, (1,) * 5)
  assert [(r.experiment, r.method, r.value, r.seed) for r in runs[:6]] == [
      ("E1", "betatc_official", 6.0, s) for s in range(4)] + [
      ("E2", "betatc_official", 1.0, 0), ("E2", "betatc_official", 2.0, 0)]
  key = dict(runs[0].key)
  assert (key["estimator"], key["param_init"], key["posterior_scale"], key["likelihood"],
          key["beta"], key["alpha"], key["num_train_steps"]) == (
      "mws", "torch", "log_sigma", "clamped_bernoulli", "6", "1", "18000")
  alpha = next(r for r in runs if r.experiment == "E4")
  assert dict(alpha.key)["alpha"] == dict(alpha.key)["beta"] == "6"
  assert len({r.key for r in runs}) == len(runs) == 4 + 10 + 10 + 4 + 10 + 20


def test_committed_runs_are_skipped_by_key():
  """The committed results' rows have the keys the queue computes for the
  same runs (β-TCVAE MSS and β-VAE at β = 6, seeds 0–3, flax init): a queue
  listing them has nothing to do; the official mode at β = 6 differs in its
  key and stays pending."""
  settings = gpu_queue.Settings()
  listed = [gpu_queue.run(settings, "X", m, 6.0, s) for m in ("betatc_vae", "beta_vae")
            for s in range(4)]
  assert gpu_queue.pending(listed, committed_rows()) == []
  official = gpu_queue.run(settings, "E1", "betatc_official", 6.0, 0)
  assert gpu_queue.pending([official], committed_rows()) == [official]


def fake_row(r, steps, frozen=""):
  return gpu_queue.result_row(r, {"step": steps, "mig": 0.3, "frozen_at_step": frozen},
                              device="d", date="2026-01-01", job="j")


def test_pending_skips_finished_and_frozen_runs_and_keeps_order():
  _, runs = gpu_queue.load_queue()
  e1 = runs[:4]
  rows = [fake_row(e1[0], 18_000), fake_row(e1[1], 18_000), fake_row(e1[2], 9_000),
          fake_row(e1[3], 700, frozen=701)]
  todo = gpu_queue.pending(runs, rows)
  assert todo[0] == e1[2] and e1[0] not in todo and e1[3] not in todo
  assert todo[1:] == runs[4:]
  assert gpu_queue.pending(runs, [fake_row(r, r.steps) for r in runs]) == []


def test_fit_takes_the_longest_prefix_that_fits():
  """Cost: per population its compile plus steps × t(k), per run one
  evaluation; the first run that does not fit ends the plan."""
  _, runs = gpu_queue.load_queue()
  t = gpu_queue.linear_step_seconds([(4, 0.004), (24, 0.024)])      # 1 ms per run and step
  assert t(14) == pytest.approx(0.014) and t(1) == pytest.approx(0.004)
  # E1 + E2 (14 official runs): 5 + 18,000 · 0.014 + 14 · 10 = 397 s.
  assert gpu_queue.cost(runs[:14], t, 10.0, 5.0) == pytest.approx(397.0)
  assert gpu_queue.fit(runs, 397.0, t, 10.0, 5.0) == runs[:14]
  # One more run is a second population (β-VAE): its compile and 18,000 × t(1) more.
  assert gpu_queue.cost(runs[:15], t, 10.0, 5.0) == pytest.approx(397.0 + 5 + 72 + 10)
  assert gpu_queue.fit(runs, 483.9, t, 10.0, 5.0) == runs[:14]
  assert gpu_queue.fit(runs, 484.0, t, 10.0, 5.0) == runs[:15]
  assert gpu_queue.fit(runs, 50.0, t, 10.0, 5.0) == []               # not even one run
  assert gpu_queue.fit([], 1e9, t, 10.0, 5.0) == []                  # an empty queue


@pytest.mark.parametrize("text,match", [
    ("[defaults]\nbatch = 2\n", r"unknown keys \['defaults.batch'\]"),
    ('[[experiment]]\nname = "Z"\nmethod = "nope"\nbetas = [1]\nseeds = [0]\n',
     "experiment 'Z': unknown method 'nope'"),
    ('[[experiment]]\nname = "Z"\nmethod = "beta_vae"\nbetas = [1]\n', r"missing \['seeds'\]"),
])
def test_bad_queue_is_refused(tmp_path, text, match):
  (tmp_path / "q.toml").write_text(text)
  with pytest.raises(ValueError, match=match):
    gpu_queue.load_queue(tmp_path / "q.toml")


def test_frozen_and_unfinished_rows_merge_and_are_reported(tmp_path):
  """A frozen run and a run stopped by the deadline keep their true step
  counts; an unfinished row never replaces a finished one, a finished one
  replaces an unfinished one; summary.md lists what did not finish."""
  _, runs = gpu_queue.load_queue()
  out = tmp_path / "job"
  out.mkdir()
  merge.write_csv(out / "rows.csv", [fake_row(runs[0], 18_000), fake_row(runs[1], 5_000),
                                     fake_row(runs[2], 11, frozen=12)], gpu_queue.ROW_COLUMNS)
  results = tmp_path / "results"
  assert merge.merge(out, results) == {"added": 3, "replaced": 0, "kept": 0}
  summary = (results / "summary.md").read_text()
  assert "stopped at step 5000 of 18000" in summary and "non-finite at step 12" in summary
  merge.write_csv(out / "rows.csv", [fake_row(runs[0], 9_000), fake_row(runs[1], 18_000)],
                  gpu_queue.ROW_COLUMNS)
  assert merge.merge(out, results) == {"added": 0, "replaced": 1, "kept": 1}
  rows = {r["seed"]: r for r in gpu_queue.read_rows(results / "results.csv")}
  assert (rows["0"]["steps"], rows["1"]["steps"], rows["2"]["frozen_at_step"]) == (
      "18000", "18000", "12")
  assert "5000" not in (results / "summary.md").read_text()


def test_merge_refuses_a_folder_without_rows(tmp_path, capsys):
  assert merge.main([str(tmp_path), "--results", str(tmp_path / "r")]) == 2
  assert "has no rows.csv" in capsys.readouterr().err
  (tmp_path / "rows.csv").write_text("method,mig\nx,1\n")
  assert merge.main([str(tmp_path), "--results", str(tmp_path / "r")]) == 2
  assert not (tmp_path / "r").exists()


def test_smoke_run_then_merge(tmp_path):
  """The job end to end at toy size on CPU (tests, queue, measurement, plan,
  two populations, a row per run as it is evaluated), merged into a copy of
  results_paper/; a second job on the merged results finds nothing to do."""
  queue = tmp_path / "q.toml"
  queue.write_text(TEST_QUEUE)
  results = tmp_path / "results_paper"
  shutil.copytree(ROOT / "results_paper", results)
  out = tmp_path / "out"
  env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable,
         "PAPER_SWEEP_WORK": str(tmp_path / "work"), "PAPER_SWEEP_BUDGET": "400"}
  result = children.run(["bash", "benchmarks/gpu/paper_sweep.sh", "--smoke", "--queue",
                         str(queue), "--results", str(results / "results.csv")], cwd=ROOT,
                        env=env, watch=[out, tmp_path / "work"])
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  assert {p.name for p in out.iterdir()} == {"rows.csv", "evals.jsonl", "plan.json",
                                             "profile.json", "timing.log"}
  assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
  rows = gpu_queue.read_rows(out / "rows.csv")
  assert [(r["experiment"], r["method"], r["value"], r["steps"]) for r in rows] == [
      ("A", "betatc_official", "6", "8"), ("A", "betatc_official", "6", "8"),
      ("B", "beta_vae", "1", "8"), ("B", "beta_vae", "4", "8")]
  assert all(0.0 <= float(r["mig"]) <= 1.0 and r["batch_size"] == "32" for r in rows)
  info = json.loads((out / "plan.json").read_text())
  assert info["pending_runs"] == 4 and len(info["plan"]) == 4 and len(info["populations"]) == 2
  assert info["measured"]["points"][0]["step_seconds"] > 0
  assert len((out / "evals.jsonl").read_text().splitlines()) == 4
  assert "passed" in (out / "timing.log").read_text()

  before = len(committed_rows())
  assert merge.main([str(out), "--results", str(results)]) == 0
  merged = gpu_queue.read_rows(results / "results.csv")
  assert len(merged) == before + 4
  assert {"summary.md", "mig_vs_beta.png", "tc_vs_mig.png", "latents.csv"} <= {
      p.name for p in results.iterdir()}
  assert (results / "jobs" / rows[0]["job"] / "plan.json").is_file()
  assert sum(1 for r in gpu_queue.read_rows(results / "latents.csv") if r["batch_size"] == "32") == 4

  spec = importlib.util.spec_from_file_location("paper_sweep", ROOT / "benchmarks" / "gpu" /
                                                "paper_sweep.py")
  driver = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(driver)
  os.environ.setdefault("PAPER_SWEEP_WORK", str(tmp_path / "work2"))
  assert driver.main(["--smoke", "--queue", str(queue), "--results", str(results / "results.csv"),
                      "--out", str(tmp_path / "out2")]) == 0
  assert json.loads((tmp_path / "out2" / "plan.json").read_text())["pending_runs"] == 0
