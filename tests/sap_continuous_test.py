"""SAP on continuous factors: disentanglement_lib's sap_score_test.py cases
(3,000 points of its identity data; identity in [0.9, 1], zeros and a
duplicated code in [0, 0.2]), then the matrix against numpy's corrcoef."""

import numpy as np

from betatc_jax.metrics.sap import sap_score_continuous
from dlib_cases import identity_factors, representations


def score(name, seed=0):
  rng = np.random.default_rng(seed)
  factors = identity_factors(3000, rng)
  return sap_score_continuous(representations(factors)[name], factors, rng=rng,
                              num_train=3000)["sap_score_continuous"]


def test_metric():
  assert 0.9 <= score("identity") <= 1.0


def test_bad_metric():
  assert 0.0 <= score("zeros") <= 0.2


def test_duplicated_latent_space():
  assert 0.0 <= score("duplicated") <= 0.2


def test_the_matrix_is_the_squared_correlation():
  rng = np.random.default_rng(1)
  factors = rng.integers(0, 5, size=(500, 3))
  codes = factors @ rng.normal(size=(3, 4)) + rng.normal(size=(500, 4))
  out = sap_score_continuous(codes, factors, rng=rng, num_train=10_000)
  want = np.corrcoef(codes.T, factors.T)[:4, 4:] ** 2
  np.testing.assert_allclose(out["sap_continuous_matrix"], want, rtol=1e-10)
  top = np.sort(want, axis=0)
  np.testing.assert_allclose(out["sap_score_continuous"], np.mean(top[-1] - top[-2]), rtol=1e-10)
