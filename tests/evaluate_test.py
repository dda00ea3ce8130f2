"""The evaluate command: eval.json, plots, table, and its errors."""

import json
import sys

import numpy as np
import pytest

import children
from betatc_jax.data import dataset_from_config
from betatc_jax import evaluate
from betatc_jax.metrics import suite
from betatc_jax.metrics.unsupervised import UNSUPERVISED_SCORES
from betatc_jax import run as run_lib
from train_test import small_config


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("eval_run")
  config = small_config(**{"eval.at_end": True, "eval.num_samples": 500})
  run_lib.train_and_evaluate(config, str(workdir))
  return workdir


def test_training_ends_with_an_evaluation(evaluated):
  result = json.loads((evaluated / "eval.json").read_text())
  for key in ("mig", "mig_with_shape", "mig_histogram", "mi", "tc", "dim_kl", "kl", "log_px",
              "step") + evaluate.OTHER_METRICS:
    assert key in result, key
  assert result["step"] == 12 and result["mig_excluded_factors"] == ["shape"]
  by_name_only = set(suite.BY_NAME_METRICS)
  for key in evaluate.SUPERVISED:
    if key in by_name_only:                        # the downstream tasks: asked for by name
      assert result[key] is None, key
    else:
      assert 0.0 <= result[key] <= 1.0, (key, result[key])
  # nats, >= 0; W_G / tr C <= 2 (W_G <= tr C + tr Λ)
  assert result["gaussian_total_correlation"] >= 0 and result["mutual_info_score"] >= 0
  assert 0 <= result["gaussian_wasserstein_correlation_norm"] <= 2
  assert result["explicitness"] >= 0.5 - 0.05    # an AUC: chance is 0.5
  assert result["mi"] >= 0 and result["kl"] > 0 and result["log_px"] < 0
  per_factor = list(result["mig_per_factor"].values())
  np.testing.assert_allclose(result["mig"], np.mean(per_factor[1:]), rtol=1e-6)
  np.testing.assert_allclose(result["mig_with_shape"], np.mean(per_factor), rtol=1e-6)
  for name in ("latent_vs_factor.png", "traversals.png"):
    assert (evaluated / name).stat().st_size > 1000
  phases = {"encoding", "elbo_decomposition", "mig", "mig_histogram", "plots",
            *suite.DEFAULT_METRIC_GROUPS}
  assert set(result["phase_seconds"]) == phases
  assert all(seconds >= 0 for seconds in result["phase_seconds"].values())
  assert result["phase_seconds"]["encoding"] > 0 and result["phase_seconds"]["mig"] > 0


def test_evaluate_command_reproduces_eval_json(evaluated):
  """``python -m betatc_jax.evaluate --workdir W`` prints the table and
  rewrites eval.json with the same numbers (the same keys, seeds and
  checkpoint)."""
  before = json.loads((evaluated / "eval.json").read_text())
  result = children.run([sys.executable, "-m", "betatc_jax.evaluate", "--workdir",
                         str(evaluated), "--no_progress"], watch=[evaluated])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "MIG (paper)" in result.stdout and "total correlation" in result.stdout
  after = json.loads((evaluated / "eval.json").read_text())
  assert set(after.pop("phase_seconds")) == set(before.pop("phase_seconds"))
  assert after == before


def test_missing_workdir(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    evaluate.command(str(tmp_path / "nope"))
  assert exit_.value.code == 2
  assert capsys.readouterr().err == f"error: No workdir {tmp_path / 'nope'}.\n"


def test_workdir_without_checkpoint(tmp_path, capsys):
  (tmp_path / "config.json").write_text(small_config().to_json())
  with pytest.raises(SystemExit) as exit_:
    evaluate.command(str(tmp_path))
  assert exit_.value.code == 2
  assert capsys.readouterr().err.startswith("error: No checkpoint in")


def test_dataset_without_factors(evaluated):
  """No factors: the unsupervised metrics, and the supervised ones marked not
  applicable (None), not an error and not 0."""
  from betatc_jax.data.ground_truth import GroundTruthDataset
  config = evaluate.load_config(evaluated)
  _, params = evaluate.restore_params(config, evaluated, (64, 64, 1))
  images = dataset_from_config(config).images[:40]
  ds = GroundTruthDataset(images, np.zeros((40, 0), np.int32), (), ())
  result = evaluate.evaluate_params(config, params, ds, step=12)
  assert all(result[k] is None for k in evaluate.SUPERVISED)
  assert set(result["not_applicable"]["metrics"]) == set(evaluate.SUPERVISED)
  for key in ("mi", "tc", "dim_kl", "kl", "log_px", "gaussian_total_correlation",
              "mutual_info_score"):
    assert np.isfinite(result[key]), key
  assert result["num_points"] == 40 and len(result["kl_per_dim"]) == config.model.latent_dim
  assert set(result["phase_seconds"]) == {"encoding", "elbo_decomposition", "unsupervised"}


def test_other_metrics_chosen_by_name_keep_their_values(evaluated):
  """A metric computed alone equals the same metric computed with all the
  others (each draws from its own generator); the rest are None; an unknown
  name is refused before any work."""
  from betatc_jax.metrics import suite
  config = evaluate.load_config(evaluated)
  dataset = dataset_from_config(config)
  codes = np.random.default_rng(0).normal(size=(len(dataset), 4)) + dataset.factors[:, 1:]
  full = suite.other_metrics(codes, dataset, np.random.default_rng(5), suite.metric_groups(True))
  some = suite.other_metrics(codes, dataset, np.random.default_rng(5),
                             ("factorvae_score", "sap_score", "unsupervised"))
  chosen = ("factorvae_score", "sap_score") + UNSUPERVISED_SCORES
  for key in evaluate.OTHER_METRICS:
    if key in chosen:
      assert some[key] == full[key], key
    else:
      assert some[key] is None, key
  with pytest.raises(ValueError, match="unknown metric"):
    evaluate.evaluate_params(config, None, dataset, step=1, other_metrics=("modularty",))


def test_a_workdir_saved_before_newer_keys_loads_with_their_defaults(evaluated, tmp_path):
  """A config.json without keys added since (here ``selection``) loads, the
  missing keys at their defaults; an unknown key is still refused."""
  saved = json.loads((evaluated / "config.json").read_text())
  del saved["selection"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert evaluate.load_config(tmp_path) == evaluate.load_config(evaluated)
  saved["selectoin"] = {"members": 3}
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match="Unknown config key.*selectoin"):
    evaluate.load_config(tmp_path)
