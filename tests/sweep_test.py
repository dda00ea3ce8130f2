"""scripts/sweep.py: outputs, the CSV against each run's evaluations, resuming."""

import csv
import importlib.util
import json
import pathlib

import pytest
from betatc_jax import members as members_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_sweep():
  spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  sweep = load_sweep()
  base = tmp_path_factory.mktemp("sweep")
  args = ["--steps", "4", "--eval_steps", "2", "--betas", "4", "--seeds", "0",
          "--batch_size", "32", "--subsample", "1,2,4,4,4", "--eval_samples", "200",
          "--skip_other_metrics",     # test_baseline_methods_sweep checks them
          "--root", str(base / "runs"), "--out", str(base / "out")]
  assert sweep.main(args) == 0
  return sweep, base, args


def test_outputs_match_each_runs_evaluation(swept):
  sweep, base, _ = swept
  rows = read_csv(base / "out" / "results.csv")
  assert [r["method"] for r in rows] == ["beta_vae", "betatc_vae"]
  assert set(sweep.CSV_COLUMNS) <= set(rows[0])
  for row in rows:
    result = json.loads((base / "runs" / "members" / f"{row['method']}_beta4_seed0" / "evals" /
                         "step_000004.json").read_text())
    assert int(row["steps"]) == result["step"] == 4
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
  sweep, base, args = swept
  run = base / "runs" / "members" / "betatc_vae_beta4_seed0"
  metrics_before = (run / "metrics.jsonl").read_text()
  evals_before = {p.name: p.read_text() for p in (run / "evals").iterdir()}
  assert sweep.main(args) == 0                      # nothing left to do
  assert (run / "metrics.jsonl").read_text() == metrics_before
  assert {p.name: p.read_text() for p in (run / "evals").iterdir()} == evals_before

  longer = list(args)
  longer[longer.index("--steps") + 1] = "6"
  assert sweep.main(longer) == 0                    # continues from the step-4 checkpoint
  steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(steps) and steps[-1] == 6 and len(steps) == len(set(steps))
  assert (run / "metrics.jsonl").read_text().startswith(metrics_before)
  assert {p.name for p in (run / "evals").iterdir()} == {
      "step_000002.json", "step_000004.json", "step_000006.json"}
  assert [int(r["steps"]) for r in read_csv(base / "out" / "results.csv")] == [6, 6]


@pytest.mark.parametrize("bad,match", [
    (["--methods", "vae"], "unknown method"),
    (["--methods", "betatc_vae,betatc_mws"], "unknown method"),
    (["--steps", "4", "--eval_steps", "8"], "eval_steps"),
    (["--subsample", "1,2"], "subsample"),
    (["--values", "nope=1"], "--values needs METHOD"),
    (["--methods", "factorvae", "--values", "factorvae=-1"], "values >= 0"),
    (["--set", "objective.dip_lambda_od=2"], "not allowed"),
])
def test_bad_arguments_rejected(bad, match, capsys):
  with pytest.raises(SystemExit):
    load_sweep().parse_args(bad)
  assert match in capsys.readouterr().err


@pytest.mark.long
def test_baseline_methods_sweep(tmp_path):
  """β-TCVAE with FactorVAE (its own population in ROOT/critic), DIP-VAE-II
  and the annealed VAE, one value each: one CSV row per run equal to its
  evaluation, the other metrics computed, the methods table and figure."""
  sweep = load_sweep()
  args = ["--steps", "4", "--eval_steps", "", "--betas", "4", "--seeds", "0",
          "--methods", "betatc_vae,factorvae,dip_vae_ii,annealed_vae",
          "--values", "factorvae=20", "--values", "dip_vae_ii=2", "--values", "annealed_vae=5",
          "--capacity_steps", "2",
          "--set", "objective.discriminator_layers=2", "--set", "objective.discriminator_width=32",
          "--batch_size", "32", "--subsample", "1,2,4,4,4", "--eval_samples", "200",
          "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
  assert sweep.main(args) == 0
  rows = read_csv(tmp_path / "out" / "results.csv")
  assert sorted((r["method"], r["param"], r["value"]) for r in rows) == [
      ("annealed_vae", "cmax", "5"), ("betatc_vae", "beta", "4"), ("dip_vae_ii", "lambda", "2"),
      ("factorvae", "gamma", "20")]
  runs = tmp_path / "runs"
  for row in rows:
    root = runs / "critic" if row["method"] == "factorvae" else runs
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
  from betatc_jax import population
  sweep = load_sweep()
  args = sweep.parse_args(["--steps", "4", "--eval_steps", "", "--betas", "3,6", "--seeds", "0",
                           "--methods", "betatc_official,betatc_vae_mss_alpha,"
                           "betatc_vae_mss_mws,betatc_vae_mws_mss",
                           "--batch_size", "32", "--root", str(tmp_path)])
  groups = sweep.members(args)
  assert sorted(groups) == [tmp_path, tmp_path / "betatc_official"]
  official = sweep.base_config(args, 4, "betatc_official")
  assert (official.model.param_init, official.model.posterior_scale,
          official.objective.likelihood) == ("torch", "log_sigma", "clamped_bernoulli")
  assert sweep.base_config(args, 4).objective.likelihood == "bernoulli"
  configs = {}
  for root, runs in groups.items():
    base = sweep.base_config(args, 4, "betatc_official" if root.name == "betatc_official" else None)
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
