"""SAP, modularity/explicitness and the β-VAE score: bounds on perfect,
mixed, duplicated and noise representations, hand-computed values, and
determinism. Every classifier's parameters are fixed in our code, so none
of these depends on a library's defaults."""

import numpy as np
import pytest

from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.metrics.beta_vae_score import beta_vae_score
from betatc_jax.metrics.linear import fit_softmax_regression, roc_auc
from betatc_jax.metrics.modularity import modularity_explicitness, modularity_from_mutual_info
from betatc_jax.metrics.sap import histogram_classifier_accuracy, sap_score

SIZES = (3, 4, 5)


def _dataset(repeats=20):
  grids = np.meshgrid(*[np.arange(n) for n in SIZES], indexing="ij")
  factors = np.repeat(np.stack([g.reshape(-1) for g in grids], 1), repeats, axis=0)
  images = np.zeros((len(factors), 1, 1, 1), np.uint8)
  return GroundTruthDataset(images, factors.astype(np.int32), ("a", "b", "c"), SIZES)


def _representations(ds, seed=0):
  """perfect (one code per factor + a dead code), mixed (rotations of pairs),
  duplicated (factor a in two codes), noise."""
  rng = np.random.default_rng(seed)
  f = (ds.factors - ds.factors.mean(0)) / ds.factors.std(0)
  jitter = 0.01 * rng.normal(size=f.shape)
  perfect = np.concatenate([f + jitter, np.zeros((len(f), 1))], 1)
  rotation = np.array([[1, 1, 0], [1, -1, 0], [0, 0, 1]]) / np.sqrt([2, 2, 1])[:, None]
  mixed = (f + jitter) @ rotation.T
  duplicated = np.concatenate([f + jitter, f[:, :1] + 0.01 * rng.normal(size=(len(f), 1))], 1)
  noise = rng.normal(size=(len(f), 4))
  return perfect, mixed, duplicated, noise


# ------------------------------------------------------------------ SAP

def test_histogram_classifier_exact():
  code = np.array([0.0, 0.1, 0.9, 1.0, 0.2, 0.8])
  labels = np.array([0, 0, 1, 1, 0, 2])
  # 2 bins over [0, 1]: the low bin holds 0,0,0 -> 0; the high bin 1,1,2 -> 1.
  acc = histogram_classifier_accuracy(code, labels, np.array([0.05, 0.95, 0.7]),
                                      np.array([0, 1, 2]), num_bins=2)
  assert acc == pytest.approx(2 / 3)


def test_sap_bounds():
  ds = _dataset()
  perfect, mixed, duplicated, noise = _representations(ds)
  score = lambda c, seed=0: sap_score(c, ds.factors, rng=np.random.default_rng(seed),
                                      num_train=600, num_test=600)
  # Perfect: each factor's own code is exact, every other code is at chance
  # (the most frequent class, ~1/|V_k|): the gap is ~ mean_k (1 - 1/|V_k|).
  expected = np.mean([1 - 1 / n for n in SIZES])
  out = score(perfect)
  assert out["sap_score"] == pytest.approx(expected, abs=0.06)
  np.testing.assert_allclose(np.diag(out["sap_matrix"][:3]), 1.0)
  assert score(duplicated)["sap_matrix"][3, 0] == 1.0
  assert score(duplicated)["sap_score"] <= expected - 0.2       # a's gap closes
  assert score(mixed)["sap_score"] <= expected - 0.15
  assert score(noise)["sap_score"] <= 0.1
  # Deterministic for a seed.
  np.testing.assert_array_equal(score(mixed, 3)["sap_matrix"], score(mixed, 3)["sap_matrix"])


def test_metrics_reject_mismatched_lengths():
  ds = _dataset(repeats=1)
  codes = np.zeros((len(ds) - 1, 2))
  with pytest.raises(ValueError, match="codes"):
    sap_score(codes, ds.factors, rng=np.random.default_rng(0))
  with pytest.raises(ValueError, match="codes"):
    modularity_explicitness(codes, ds.factors, rng=np.random.default_rng(0))
  with pytest.raises(ValueError, match="codes"):
    beta_vae_score(codes, ds, rng=np.random.default_rng(0))
  with pytest.raises(ValueError, match="NaN"):
    sap_score(np.full((len(ds), 2), np.nan), ds.factors, rng=np.random.default_rng(0))


# ------------------------------------------------------------------ modularity

def test_modularity_exact():
  assert modularity_from_mutual_info(np.eye(3)) == pytest.approx(1.0)
  # Code 0 equally about both factors: δ = 1/(1·1) = 1 -> 0; code 1 dead -> 0.
  assert modularity_from_mutual_info(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.0)
  # Hand value: θ = 2, off-peak 1 and 0 over K − 1 = 2: δ = 1/(4·2), 1 − δ = 7/8.
  assert modularity_from_mutual_info(np.array([[2.0, 1.0, 0.0]])) == pytest.approx(7 / 8)


def test_modularity_explicitness_bounds():
  ds = _dataset()
  perfect, mixed, duplicated, noise = _representations(ds)
  run = lambda c: modularity_explicitness(c, ds.factors, rng=np.random.default_rng(1),
                                          num_train=800, num_test=400)
  out = run(perfect[:, :3])
  assert out["modularity"] >= 0.95 and out["explicitness"] >= 0.95
  # The dead code scores 0 in the mean over codes (disentanglement_lib's choice).
  assert run(perfect)["modularity"] == pytest.approx(0.75 * out["modularity"], abs=1e-9)
  assert run(mixed)["modularity"] <= 0.85              # 0.79: codes 0 and 1 carry a and b
  assert run(duplicated)["modularity"] >= 0.95        # each code is still about one factor
  noisy = run(noise)
  assert noisy["explicitness"] <= 0.6                # chance AUC is 0.5
  assert noisy["modularity"] <= 0.9


def test_softmax_regression_matches_brute_force_optimum():
  """The fitted weights zero the gradient of the stated objective, and the
  AUC equals the pairwise count."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(200, 2))
  y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int) + (x[:, 1] > 1)
  model = fit_softmax_regression(x, y, 3, c=2.0)
  p = np.exp(model.log_proba(x))
  onehot = np.eye(3)[y]
  grad_w = x.T @ (p - onehot) + model.weights / 2.0
  np.testing.assert_allclose(grad_w, 0.0, atol=1e-4)
  np.testing.assert_allclose((p - onehot).sum(0), 0.0, atol=1e-4)
  scores = rng.integers(0, 5, size=60).astype(float)       # many ties
  positive = rng.random(60) < 0.5
  pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
           for a in scores[positive] for b in scores[~positive]]
  assert roc_auc(scores, positive) == pytest.approx(np.mean(pairs))


# ------------------------------------------------------------------ β-VAE score

def test_beta_vae_score_bounds():
  ds = _dataset()
  perfect, mixed, duplicated, noise = _representations(ds)
  score = lambda c: beta_vae_score(c, ds, rng=np.random.default_rng(2), batch_size=16,
                                   num_train=300, num_eval=200)["beta_vae_score"]
  assert score(perfect) == 1.0
  assert score(duplicated) == 1.0      # still one code group per factor: readable
  assert score(noise) <= 0.6           # chance is 1/3
  first = score(mixed)
  assert first == score(mixed)         # deterministic for a seed
