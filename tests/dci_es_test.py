"""DCI-ES explicitness and size (metrics/dci_es.py): the loss-capacity
formula on curves with known answers and against a brute-force integral,
then the forest probes on known codes (a factor read off one code's sign,
constant codes, disentanglement_lib's identity data)."""

import numpy as np
import pytest

from betatc_jax.metrics.dci_es import dci_es, explicitness_from_curve, size
from dlib_cases import identity_factors, representations


def test_the_smallest_probe_at_the_lowest_loss_is_fully_explicit():
  assert explicitness_from_curve([1, 2, 4], [0.1, 0.1, 0.1], 0.9) == 1.0


def test_a_loss_falling_linearly_from_the_baseline_scores_zero():
  b = 0.75
  assert explicitness_from_curve([0, 1, 2, 3], [b, 2 * b / 3, b / 3, 0.0], b) == pytest.approx(0.0)


def test_a_loss_held_at_the_baseline_until_the_last_probe():
  """AULCC = 2b + b/2 over κ in [0, 3], Z = 3b/2: E = 1 − 5/3."""
  b = 0.5
  assert explicitness_from_curve([0, 1, 2, 3], [b, b, b, 0.0], b) == pytest.approx(-2 / 3)


def test_nothing_better_than_the_baseline_scores_zero():
  assert explicitness_from_curve([1, 2, 3], [0.9, 0.95, 0.9], 0.9) == 0.0


def test_a_rising_loss_counts_as_its_best_so_far():
  over = explicitness_from_curve([1, 2, 3, 4], [0.6, 0.2, 0.5, 0.9], 1.0)
  carried = explicitness_from_curve([1, 2, 3, 4], [0.6, 0.2, 0.2, 0.2], 1.0)
  assert over == carried


def test_against_a_brute_force_integral_and_invariant_to_the_capacity_scale():
  rng = np.random.default_rng(0)
  for _ in range(20):
    kappa = np.sort(rng.choice(np.arange(1, 100), size=6, replace=False)).astype(float)
    losses = rng.uniform(0.0, 1.0, size=6)
    baseline = 1.0
    curve = np.minimum.accumulate(losses)
    grid = np.linspace(kappa[0], kappa[-1], 200_001)
    gap = np.interp(grid, kappa, curve) - curve[-1]
    area = np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(grid))
    expected = 1 - area / (0.5 * (kappa[-1] - kappa[0]) * (baseline - curve[-1]))
    got = explicitness_from_curve(kappa, losses, baseline)
    assert got == pytest.approx(expected, abs=1e-6)
    assert -1.0 <= got <= 1.0
    assert explicitness_from_curve(3 * kappa - 7, losses, baseline) == pytest.approx(got)


@pytest.mark.parametrize("capacities, losses", [([1], [0.1]), ([1, 2], [0.1]), ([2, 1], [0.1, 0.2]),
                                                ([1, 2], [0.1, np.nan])])
def test_bad_curves_are_refused(capacities, losses):
  with pytest.raises(ValueError):
    explicitness_from_curve(capacities, losses, 1.0)


def test_size_is_factors_over_code_dims():
  assert size(5, 10) == 0.5 and size(10, 10) == 1.0
  with pytest.raises(ValueError):
    size(5, 0)


def test_a_factor_on_one_codes_sign_is_fully_explicit_and_constant_codes_score_zero():
  rng = np.random.default_rng(0)
  factors = rng.integers(0, 2, size=(3000, 1))
  codes = np.concatenate([np.where(factors == 1, 1.0, -1.0) * rng.uniform(0.5, 2.0, (3000, 1)),
                          rng.normal(size=(3000, 3))], axis=1)
  out = dci_es(codes, factors, rng=np.random.default_rng(1), num_train=2000, num_test=1000)
  assert out["explicitness"] == 1.0 and np.all(out["loss_curves"] == 0.0)
  assert out["size"] == 0.25
  zeros = dci_es(np.zeros((3000, 2)), factors, rng=np.random.default_rng(1),
                 num_train=2000, num_test=1000)
  assert zeros["explicitness"] == 0.0
  assert np.all(zeros["loss_curves"] == zeros["baseline_losses"][:, None])


def test_identity_codes_are_more_explicit_than_mixed_ones():
  """disentanglement_lib's identity data (10 factors of 10 values): the
  identity reaches zero test error by depth 4 (E = 0.81 here); a random
  rotation of the same codes keeps the information but needs deeper trees
  and still errs at depth 8 (E = 0.49), so its E is lower."""
  rng = np.random.default_rng(0)
  factors = identity_factors(4000, rng)
  codes = representations(factors)
  identity = dci_es(codes["identity"], factors, rng=np.random.default_rng(1),
                    num_train=3000, num_test=1000, depths=(1, 2, 4, 8))
  rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
  mixed = dci_es(codes["identity"] @ rotation, factors, rng=np.random.default_rng(1),
                 num_train=3000, num_test=1000, depths=(1, 2, 4, 8))
  assert identity["explicitness"] >= 0.7
  assert np.all(identity["loss_curves"][:, -1] == 0.0)
  assert mixed["explicitness"] < identity["explicitness"] - 0.2
  assert size(10, 10) == identity["size"]
