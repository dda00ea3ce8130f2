"""The unsupervised scores (metrics/unsupervised.py): disentanglement_lib's
own cases of unsupervised_metrics_test.py, re-created, then cross-checks
against independent numpy/scipy/scikit-learn formulas."""

import numpy as np
import pytest
import scipy.linalg
import sklearn.metrics

from betatc_jax.metrics.codes import discretize
from betatc_jax.metrics.unsupervised import (gaussian_total_correlation,
                                             gaussian_wasserstein_correlation, mutual_info_score,
                                             unsupervised_scores)

CORRELATED = np.array([[1.0, 0.9], [0.9, 1.0]])


def kl_gaussians(mean_0, cov_0, mean_1, cov_1):
  """KL(N(mean_0, cov_0) || N(mean_1, cov_1)) from determinants and an inverse."""
  inv_1 = np.linalg.inv(cov_1)
  diff = mean_1 - mean_0
  return 0.5 * (np.trace(inv_1 @ cov_0) + diff @ inv_1 @ diff - len(mean_0)
                + np.log(np.linalg.det(cov_1) / np.linalg.det(cov_0)))


def random_covariance(rng, d=5):
  a = rng.normal(size=(d, d))
  return a @ a.T + 0.1 * np.eye(d)


# disentanglement_lib's cases: the same inputs and bounds.

def test_gaussian_total_correlation_zero():
  assert -0.01 <= gaussian_total_correlation(np.eye(5)) <= 0.01


def test_gaussian_total_correlation_same():
  should_be = kl_gaussians(np.zeros(2), CORRELATED, np.zeros(2), np.diag(np.diag(CORRELATED)))
  assert should_be - 0.01 <= gaussian_total_correlation(CORRELATED.astype(np.float32)) <= should_be + 0.01


def test_gaussian_wasserstein_correlation_zero():
  assert -0.01 <= gaussian_wasserstein_correlation(np.eye(5)) <= 0.01


def test_gaussian_wasserstein_correlation_same():
  diagonal = np.diag(np.diag(CORRELATED))
  should_be = np.trace(CORRELATED + diagonal - 2 * scipy.linalg.sqrtm(CORRELATED @ diagonal)).real
  score = gaussian_wasserstein_correlation(CORRELATED.astype(np.float32))
  assert should_be - 0.01 <= score <= should_be + 0.01


# Cross-checks, tighter.

def test_total_correlation_is_the_kl_to_the_product_of_marginals():
  rng = np.random.default_rng(0)
  for _ in range(5):
    cov = random_covariance(rng)
    want = kl_gaussians(np.zeros(5), cov, np.zeros(5), np.diag(np.diag(cov)))
    np.testing.assert_allclose(gaussian_total_correlation(cov), want, rtol=1e-9)


def test_wasserstein_equals_the_sqrtm_formula_and_the_closed_form_for_two_dims():
  rng = np.random.default_rng(1)
  for _ in range(5):
    cov = random_covariance(rng)
    diagonal = np.diag(np.diag(cov))
    want = np.trace(cov + diagonal - 2 * scipy.linalg.sqrtm(cov @ diagonal)).real
    np.testing.assert_allclose(gaussian_wasserstein_correlation(cov), want, rtol=1e-8)
  # unit variances, correlation r: W = 4 − 2(√(1 + r) + √(1 − r))
  for r in (0.0, 0.3, 0.9, -0.5):
    cov = np.array([[1.0, r], [r, 1.0]])
    np.testing.assert_allclose(gaussian_wasserstein_correlation(cov),
                               4 - 2 * (np.sqrt(1 + r) + np.sqrt(1 - r)), atol=1e-12)


def test_mutual_info_score_equals_scikit_learn_pairwise():
  rng = np.random.default_rng(2)
  codes = rng.normal(size=(3000, 4))
  codes[:, 1] += codes[:, 0]
  binned = discretize(codes, 20)
  pairs = [sklearn.metrics.mutual_info_score(binned[:, i], binned[:, j])
           for i in range(4) for j in range(4) if i != j]
  np.testing.assert_allclose(mutual_info_score(codes), np.mean(pairs), rtol=1e-10)


def test_independent_codes_score_near_zero_and_dependent_ones_high():
  """Independent dimensions: every score near 0 (the discrete MI's bias at
  10,000 points and 20 bins is about 19²/(2·10⁴) ≈ 0.018 nats); two copies of
  one code: a large total correlation and the mutual information of a copy
  (its binned entropy, > 2 nats for 20 bins of a Gaussian)."""
  rng = np.random.default_rng(3)
  independent = unsupervised_scores(rng.normal(size=(20_000, 4)), rng=rng)
  assert abs(independent["gaussian_total_correlation"]) < 0.01
  assert abs(independent["gaussian_wasserstein_correlation_norm"]) < 0.01
  assert 0 <= independent["mutual_info_score"] < 0.03
  x = rng.normal(size=(20_000, 1))
  copies = np.concatenate([x, x + 1e-3 * rng.normal(size=x.shape)], axis=1)
  dependent = unsupervised_scores(copies, rng=rng)
  assert dependent["gaussian_total_correlation"] > 3
  assert dependent["mutual_info_score"] > 2
  assert 0 <= dependent["gaussian_wasserstein_correlation_norm"] <= 1


def test_a_constant_dimension_adds_nothing():
  rng = np.random.default_rng(4)
  codes = rng.normal(size=(5000, 3)) @ rng.normal(size=(3, 3))
  with_constant = np.concatenate([codes, np.full((5000, 1), 0.7)], axis=1)
  a = unsupervised_scores(codes, rng=np.random.default_rng(0))
  b = unsupervised_scores(with_constant, rng=np.random.default_rng(0))
  for key in ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
              "gaussian_wasserstein_correlation_norm"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-12, err_msg=key)
  # its three pairs count 0 among the 12 ordered pairs, against 6 without it
  np.testing.assert_allclose(b["mutual_info_score"], a["mutual_info_score"] * 6 / 12, rtol=1e-12)


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match="square"):
    gaussian_total_correlation(np.ones((2, 3)))
  with pytest.raises(ValueError, match="positive variance"):
    gaussian_wasserstein_correlation(np.diag([1.0, 0.0]))
  with pytest.raises(ValueError, match="finite codes"):
    unsupervised_scores(np.full((10, 2), np.nan), rng=np.random.default_rng(0))
