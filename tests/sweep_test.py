"""The sweep (``python -m betatc_jax.sweep``): outputs, the CSV against each
run's evaluations, resuming, the same numbers as before it moved into the
package, its config's errors, the methods' runs."""

import csv
import json
import pathlib
import sys

import pytest

import children
from betatc_jax import members as members_lib
from betatc_jax.sweep import grid, report

ROOT = pathlib.Path(__file__).resolve().parents[1]


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def small_sweep(root, **overrides):
  """A sweep config: 4 steps of β-VAE and β-TCVAE at β = 4, seed 0, on a
  5,760-image sub-grid."""
  c = grid.get_config()
  c.steps, c.eval_steps, c.betas, c.seeds = 4, (2,), (4.0,), (0,)
  c.base.batch_size, c.base.dataset.subsample, c.base.eval.num_samples = 32, (1, 2, 4, 4, 4), 200
  c.other_metrics = False        # test_baseline_methods_sweep checks them
  c.root, c.out = str(root / "runs"), str(root / "out")
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return c


SMALL_FLAGS = ["--config.steps=4", "--config.eval_steps=2", "--config.betas=4", "--config.seeds=0",
               "--config.base.batch_size=32", "--config.base.dataset.subsample=1,2,4,4,4",
               "--config.base.eval.num_samples=200", "--config.other_metrics=False"]


def run_sweep(root, *flags):
  """``python -m betatc_jax.sweep`` with the small sweep's flags."""
  return children.run([sys.executable, "-m", "betatc_jax.sweep", *SMALL_FLAGS,
                       f"--config.root={root / 'runs'}", f"--config.out={root / 'out'}", *flags],
                      cwd=ROOT, watch=[root])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  base = tmp_path_factory.mktemp("sweep")
  result = run_sweep(base)
  assert result.returncode == 0, result.stderr[-3000:]
  return base


def test_the_command_gives_the_numbers_it_gave_before_it_moved(swept):
  """The same small sweep as ``scripts/sweep.py`` ran it before the sweep
  moved into the package (its curves.csv, committed in tests/data): the same
  runs, the same numbers (to 1e-4: another CPU rounds differently)."""
  before = read_csv(ROOT / "tests" / "data" / "small_sweep_curves.csv")
  now = read_csv(swept / "out" / "curves.csv")
  assert [(r["method"], r["steps"]) for r in now] == [(r["method"], r["steps"]) for r in before]
  for a, b in zip(now, before):
    for key in ("mig", "mig_with_shape", "tc", "mi", "dim_kl", "log_px", "kl"):
      assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-6), (a["method"], key)


def test_outputs_match_each_runs_evaluation(swept):
  base = swept
  rows = read_csv(base / "out" / "results.csv")
  assert [r["method"] for r in rows] == ["beta_vae", "betatc_vae"]
  assert set(report.CSV_COLUMNS) <= set(rows[0])
  for row in rows:
    result = json.loads((base / "runs" / "members" / f"{row['method']}_beta4_seed0" / "evals" /
                         "step_000004.json").read_text())
    assert int(row["steps"]) == result["step"] == 4
    assert result["eval_seconds"] > 0 and result["phase_seconds"]["mig"] > 0   # total, per phase
    for key in ("mig", "mig_with_shape", "tc", "mi", "dim_kl", "log_px"):
      assert float(row[key]) == pytest.approx(result[key], rel=1e-5), key
  latents = read_csv(base / "out" / "latents.csv")
  assert [(r["method"], int(r["steps"])) for r in latents] == [
      ("beta_vae", 2), ("beta_vae", 4), ("betatc_vae", 2), ("betatc_vae", 4)]
  for row in latents:
    result = json.loads((base / "runs" / "members" / f"{row['method']}_beta4_seed0" / "evals" /
                         f"step_{int(row['steps']):06d}.json").read_text())
    kl = [float(row[f"kl_{j}"]) for j in range(10)]
    assert kl == pytest.approx(result["kl_per_dim"], rel=1e-5)
    for name, mig in result["mig_per_factor"].items():
      assert float(row[f"mig_{name}"]) == pytest.approx(mig, rel=1e-5, nan_ok=True), name
  curves = read_csv(base / "out" / "curves.csv")
  assert sorted((r["method"], int(r["steps"])) for r in curves) == [
      ("beta_vae", 2), ("beta_vae", 4), ("betatc_vae", 2), ("betatc_vae", 4)]
  for name in ("mig_vs_beta.png", "mig_vs_steps.png", "latent_vs_factor_best.png", "sweep.json",
               "tc_vs_mig.png",
               "summary.md"):
    assert (base / "out" / name).stat().st_size > 0, name
  # One population (one checkpoint) whose members are ordinary run workdirs.
  assert json.loads((base / "runs" / "population.json").read_text())["members"][0]["name"] \
      == "beta_vae_beta4_seed0"
  assert sorted(p.name for p in (base / "runs" / "checkpoints").iterdir() if p.name.isdigit()) \
      == ["4"]
  for row in rows:
    member = base / "runs" / "members" / f"{row['method']}_beta4_seed0"
    assert (member / "checkpoints" / "4").is_dir() and (member / "config.json").is_file()
  info = json.loads((base / "out" / "sweep.json").read_text())
  assert info["runs_finished"] == info["runs_expected"] == 2
  # One population of 2 runs: its wall time once, and per member-step.
  seconds = float(rows[0]["train_seconds"])
  assert info["train_wall_seconds"] == pytest.approx(seconds, rel=1e-4)   # the CSV rounds
  assert info["seconds_per_member_step"] == pytest.approx(seconds / (4 * 2), rel=1e-4)
  best = max((r for r in rows if r["method"] == "betatc_vae"), key=lambda r: float(r["mig"]))
  assert info["best_betatc_run"] == f"betatc_vae_beta{best['value']}_seed{best['seed']}"
  assert {r["param"] for r in rows} == {"beta"}


def test_rerun_skips_finished_runs_and_a_larger_budget_continues_them(swept):
  from betatc_jax.sweep import __main__ as command
  base = swept
  run = base / "runs" / "members" / "betatc_vae_beta4_seed0"
  metrics_before = (run / "metrics.jsonl").read_text()
  evals_before = {p.name: p.read_text() for p in (run / "evals").iterdir()}
  command.sweep(small_sweep(base))                  # nothing left to do
  assert (run / "metrics.jsonl").read_text() == metrics_before
  assert {p.name: p.read_text() for p in (run / "evals").iterdir()} == evals_before
  command.sweep(small_sweep(base, steps=6))         # continues from the step-4 checkpoint
  steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(steps) and steps[-1] == 6 and len(steps) == len(set(steps))
  assert (run / "metrics.jsonl").read_text().startswith(metrics_before)
  assert {p.name for p in (run / "evals").iterdir()} == {
      "step_000002.json", "step_000004.json", "step_000006.json"}
  assert [int(r["steps"]) for r in read_csv(base / "out" / "results.csv")] == [6, 6]


@pytest.mark.parametrize("overrides,match", [
    ({"methods": "vae"}, "unknown method"),
    ({"methods": "betatc_vae,betatc_mws"}, "unknown method"),
    ({"eval_steps": (8,)}, "eval_steps"),
    ({"base.dataset.subsample": (1, 2)}, "subsample"),
    ({"methods": "factorvae", "grids.factorvae": (-1.0,)}, "values >= 0"),
    ({"base.objective.dip_lambda_od": 2.0}, "base.objective.dip_lambda_od is set by the sweep"),
    ({"base.seed": 3}, "base.seed is set by the sweep"),
    ({"skip_metrics": "fairness"}, "skip_metrics names unknown"),
    ({"extra_metrics": "dci_es,fairnes"}, r"extra_metrics names unknown metric\(s\) \['fairnes'\]"),
])
def test_bad_sweep_configs_are_refused_before_any_work(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    grid.validate(small_sweep(tmp_path, **overrides))
  assert not (tmp_path / "runs").exists()


def test_the_final_metrics_are_the_defaults_less_skipped_plus_extra(tmp_path):
  from betatc_jax.metrics import suite
  c = small_sweep(tmp_path, other_metrics=True, skip_metrics="modularity",
                  extra_metrics="dci_es, fairness")
  assert grid.final_metrics(c) == tuple(
      g for g in suite.OTHER_METRIC_GROUPS
      if g in {"dci_es", "fairness"} or (g in suite.DEFAULT_METRIC_GROUPS and g != "modularity"))
  c.other_metrics = False
  assert grid.final_metrics(c) == ("fairness", "dci_es")
  assert set(suite.OTHER_METRICS) <= set(report.CSV_COLUMNS)


@pytest.mark.parametrize("flag,message", [
    ("--config.methods=vae", "error: Invalid sweep config: unknown method(s) ['vae']"),
    ("--config.stepz=3", "error: 'stepz'"),
])
def test_the_command_line_errors_are_one_line_and_exit_2(tmp_path, flag, message):
  result = run_sweep(tmp_path, flag)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr


@pytest.mark.long
def test_baseline_methods_sweep(tmp_path):
  """β-TCVAE with FactorVAE (its own population in ROOT/discriminator),
  DIP-VAE-II and the annealed VAE, one value each: one CSV row per run equal
  to its evaluation, the other metrics computed, the methods table and figure."""
  from betatc_jax.sweep import __main__ as command
  command.sweep(small_sweep(tmp_path, eval_steps=(), other_metrics=True,
                            methods="betatc_vae,factorvae,dip_vae_ii,annealed_vae",
                            **{"grids.factorvae": (20.0,), "grids.dip_vae_ii": (2.0,),
                               "grids.annealed_vae": (5.0,), "capacity_steps": 2,
                               "base.objective.discriminator_layers": 2,
                               "base.objective.discriminator_width": 32}))
  rows = read_csv(tmp_path / "out" / "results.csv")
  assert sorted((r["method"], r["param"], r["value"]) for r in rows) == [
      ("annealed_vae", "cmax", "5"), ("betatc_vae", "beta", "4"), ("dip_vae_ii", "lambda", "2"),
      ("factorvae", "gamma", "20")]
  runs = tmp_path / "runs"
  for row in rows:
    root = runs / "discriminator" if row["method"] == "factorvae" else runs
    name = f"{row['method']}_{row['param']}{row['value']}_seed0"
    result = json.loads((root / "members" / name / "evals" / "step_000004.json").read_text())
    for key in ("mig", "tc", "sap_score", "modularity", "explicitness", "beta_vae_score"):
      assert float(row[key]) == pytest.approx(result[key], rel=1e-5), (name, key)
    config = json.loads((root / "members" / name / "config.json").read_text())
    assert config["objective"]["name"] == {"betatc_vae": "betatc"}.get(row["method"],
                                                                      row["method"])
  config = json.loads((runs / "members" / "dip_vae_ii_lambda2_seed0" / "config.json").read_text())
  assert config["objective"]["dip_lambda_d_factor"] == 1.0          # DIP-VAE-II: λ_d = λ_od
  config = json.loads((runs / "members" / "annealed_vae_cmax5_seed0" / "config.json").read_text())
  assert config["objective"]["capacity_steps"] == 2
  summary = (tmp_path / "out" / "summary.md").read_text()
  for label in ("FactorVAE", "DIP-VAE-II", "AnnealedVAE", "γ = 20", "C_max = 5"):
    assert label in summary, label
  assert (tmp_path / "out" / "methods.png").stat().st_size > 1000


def test_mechanism_methods_configure_their_runs(tmp_path):
  """The official mode trains as a population of its own with the official
  code's model head, init and likelihood; α = β is tied to the grid; the
  mixtures set each estimator; the member configs are what train.py runs."""
  c = small_sweep(tmp_path, eval_steps=(), betas=(3.0, 6.0),
                  methods="betatc_official,betatc_vae_mss_alpha,betatc_vae_mss_mws,"
                          "betatc_vae_mws_mss")
  grid.validate(c)
  groups = grid.members_of(c)
  runs_root = tmp_path / "runs"
  assert sorted(groups) == [runs_root, runs_root / "betatc_official"]
  official = grid.population_base(c, 4, "betatc_official")
  assert (official.model.param_init, official.model.posterior_scale,
          official.objective.likelihood) == ("torch", "log_sigma", "clamped_bernoulli")
  assert grid.population_base(c, 4).objective.likelihood == "bernoulli"
  configs = {}
  for root, runs in groups.items():
    base = grid.population_base(c, 4, "betatc_official" if root.name == "betatc_official" else None)
    for config, member in zip(members_lib.validate_population(base, runs), runs):
      configs[member.name] = config
  assert configs["betatc_official_beta6_seed0"].objective.estimator == "mws"
  for beta in (3, 6):
    alpha = configs[f"betatc_vae_mss_alpha_beta{beta}_seed0"].objective
    assert (alpha.estimator, alpha.alpha, alpha.beta) == ("mss", beta, beta)
  mixed = configs["betatc_vae_mss_mws_beta6_seed0"].objective
  assert (mixed.estimator, mixed.marginal_estimator, mixed.alpha) == ("mss", "mws", 1.0)
  mixed = configs["betatc_vae_mws_mss_beta6_seed0"].objective
  assert (mixed.estimator, mixed.marginal_estimator) == ("mws", "mss")
