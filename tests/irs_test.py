"""IRS (metrics/irs.py): disentanglement_lib's irs_test.py cases on its
identity data (3,000 points, factors kept as they are, q = 0.99: identity
in [0.9, 1], zeros in [0, 0.1]; constant latents dropped), and hand values
on a crossed 2 × 2 grid with q = 1 (the paper's maximum)."""

import numpy as np
import pytest

from betatc_jax.metrics.irs import irs, irs_from_groups
from dlib_cases import identity_factors, representations


def score(name):
  rng = np.random.default_rng(0)
  factors = identity_factors(3000, rng)
  return irs(representations(factors)[name], factors, rng=rng, num_train=3000, num_bins=None)


def test_metric():
  assert 0.9 <= score("identity")["irs"] <= 1.0


def test_bad_metric():
  out = score("zeros")
  assert 0.0 <= out["irs"] <= 0.1 and out["num_active_dims"] == 0


def test_drop_constant_dims():
  """Constant latents are left out: the score of the codes with two constant
  columns added equals that without them."""
  rng = np.random.default_rng(0)
  factors = identity_factors(2000, rng)
  codes = representations(factors)["identity"] + rng.normal(0, 0.5, size=(2000, 10))
  with_constants = np.concatenate([np.ones((2000, 1)), codes, np.zeros((2000, 1))], axis=1)
  a = irs(codes, factors, rng=np.random.default_rng(1), num_bins=None)
  b = irs(with_constants, factors, rng=np.random.default_rng(1), num_bins=None)
  assert a["irs"] == b["irs"] and b["num_active_dims"] == 10


def test_hand_values_on_a_crossed_grid():
  """v1, v2 ∈ {0, 1}, one point each. z = v1: IRS row [1, 0]; z = v1 + v2:
  within either factor's groups it moves by 0.5 of its maximal deviation
  1, so 0.5 for both; the weighted mean of the two latents (weights 0.5 and
  1) is (0.5 · 1 + 1 · 0.5) / 1.5 = 2/3."""
  factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  codes = np.stack([factors[:, 0], factors.sum(1)], axis=1).astype(float)
  out = irs_from_groups(codes, factors, quantile=1.0)
  np.testing.assert_allclose(out["irs_matrix"], [[1.0, 0.0], [0.5, 0.5]])
  np.testing.assert_allclose(out["max_deviations"], [0.5, 1.0])
  np.testing.assert_allclose(out["irs"], 2 / 3)
  assert out["parents"][0] == 0


def test_bad_quantile():
  with pytest.raises(ValueError, match="quantile"):
    irs(np.ones((4, 1)), np.zeros((4, 1), int), rng=np.random.default_rng(0), quantile=0.0)
