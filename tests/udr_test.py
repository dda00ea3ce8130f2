"""UDR (Duan et al., 2020): disentanglement_lib's own test cases
(evaluation/udr/metrics/udr_test.py), written fresh; the Spearman matrix
against scipy's per-pair definition; a brute-force UDR on small arrays;
invariance to permutation and sign."""

import itertools

import numpy as np
import pytest
import scipy.stats

from betatc_jax.metrics import udr

NUM_FACTORS = 10


def dummy_codes(rng, num_points=1000):
  """disentanglement_lib's DummyData read by its test's representation: the
  first 10 pixels of uniform noise images, i.e. 10 independent uniforms."""
  return rng.random((num_points, NUM_FACTORS))


@pytest.mark.parametrize("correlation", ["spearman", "lasso"])
def test_a_permuted_and_sign_flipped_copy_scores_high(correlation):
  """dlib's test_metric_spearman / test_metric_lasso: both runs in [0.8, 1]."""
  rng = np.random.default_rng(0)
  codes = dummy_codes(rng)
  permutation = rng.permutation(NUM_FACTORS)
  flipped = rng.choice(NUM_FACTORS, NUM_FACTORS // 2)
  other = codes[:, permutation]
  other[:, flipped] *= -1.0
  out = udr.udr([codes, other], [np.ones(NUM_FACTORS)] * 2, correlation=correlation)
  assert np.all((0.8 <= out["scores"]) & (out["scores"] <= 1.0)), out["scores"]


def test_uninformative_latents_are_filtered_by_their_kl():
  """dlib's test_metric_kl: one informative latent (KL 1) and nine of KL 0
  holding noise. Unfiltered, the nine count as unmatched: [0, 0.2];
  filtered, the one pair matches: [0.8, 1]."""
  rng = np.random.default_rng(0)
  data = rng.random((1000, 1))
  runs = [np.concatenate([data, rng.random((1000, NUM_FACTORS - 1))], axis=1) for _ in range(2)]
  kl = np.zeros(NUM_FACTORS)
  kl[0] = 1.0
  unfiltered = udr.udr(runs, [kl, kl], filter_low_kl=False)["scores"]
  filtered = udr.udr(runs, [kl, kl], filter_low_kl=True)["scores"]
  assert np.all((0.0 <= unfiltered) & (unfiltered <= 0.2)), unfiltered
  assert np.all((0.8 <= filtered) & (filtered <= 1.0)), filtered


def test_relative_strength():
  """dlib's test_relative_strength_disentanglement, its four matrices."""
  assert udr.relative_strength(np.eye(3)) == 1.0
  assert 0.6 <= udr.relative_strength(np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])) <= 0.7
  assert 0.3 <= udr.relative_strength(np.ones((3, 3))) <= 0.4
  assert udr.relative_strength(np.zeros((3, 3))) == 0.0
  # By hand: [[1, 1, 0], [1, 1, 0], [0, 0, 1]]: each side ½, ½, 1 -> 2/3.
  assert udr.relative_strength(np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])) == \
      pytest.approx(2 / 3)


def test_spearman_matrix():
  """dlib's test_spearman_correlation: a copy is the identity; a duplicated
  column matches its source twice (atol 0.1)."""
  rng = np.random.default_rng(0)
  a = rng.random((1000, 3))
  np.testing.assert_allclose(udr.spearman_matrix(a, a.copy()), np.eye(3), atol=0.1)
  a = rng.random((1000, 3))
  b = a.copy()
  b[:, 1] = b[:, 0]
  np.testing.assert_allclose(udr.spearman_matrix(a, b),
                             [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], atol=0.1)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")   # the NaN case
def test_spearman_matrix_equals_scipy_per_pair():
  """The one-product ranks equal scipy.stats.spearmanr on every pair, ties
  and a constant column (NaN) included."""
  rng = np.random.default_rng(1)
  a = rng.integers(0, 5, (60, 3)).astype(float)        # ties
  b = np.concatenate([rng.normal(size=(60, 2)), np.zeros((60, 1))], axis=1)
  got = udr.spearman_matrix(a, b)
  for p, q in itertools.product(range(3), range(3)):
    want = abs(scipy.stats.spearmanr(a[:, p], b[:, q]).statistic)
    if np.isnan(want):
      assert np.isnan(got[p, q])
    else:
      assert got[p, q] == pytest.approx(want, abs=1e-12)


def test_lasso_matrix():
  """dlib's test_lasso_correlation: codes ×10, a copy is the identity and a
  duplicated column is predicted from its source (atol 0.2)."""
  rng = np.random.default_rng(0)
  a = rng.random((1000, 3)) * 10.0
  np.testing.assert_allclose(udr.lasso_matrix(a, a.copy()), np.eye(3), atol=0.2)
  a = rng.random((1000, 3)) * 10.0
  b = a.copy()
  b[:, 1] = b[:, 0]
  np.testing.assert_allclose(udr.lasso_matrix(a, b),
                             [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], atol=0.2)


def brute_force_udr(codes, kl, correlation):
  """The definition written out loop by loop (scipy per pair, sklearn's
  scaler and Lasso), for small arrays."""
  from sklearn import linear_model, preprocessing
  scaled = [preprocessing.StandardScaler().fit_transform(c) * (k > 0.01)
            for c, k in zip(codes, kl)]
  num, dim = len(codes), codes[0].shape[1]
  pairwise = np.zeros((num, num))
  for i, j in itertools.product(range(num), range(num)):
    if i == j:
      continue
    if correlation == "lasso":
      r = np.abs(linear_model.Lasso(alpha=0.1).fit(scaled[i], scaled[j]).coef_).T
    else:
      r = np.zeros((dim, dim))
      for p, q in itertools.product(range(dim), range(dim)):
        r[p, q] = abs(scipy.stats.spearmanr(scaled[i][:, p], scaled[j][:, q]).statistic)
    r = r[kl[i] > 0.01][:, kl[j] > 0.01]
    side = []
    for lines in (r.T, r):              # each column, then each row
      terms = []
      for line in lines:
        total = np.sum(line)
        terms.append(0.0 if not np.isfinite(total) or total == 0 else np.max(line) ** 2 / total)
      side.append(np.mean(terms))
    pairwise[i, j] = np.mean(side)
  return np.asarray([np.median([pairwise[j, i] for j in range(num) if j != i])
                     for i in range(num)])


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")   # a collapsed latent
@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_udr_equals_a_brute_force_computation(correlation):
  """Four runs of 4 latents on 80 images, one collapsed latent in one run,
  mixed codes in another: every score equals the loop-by-loop definition."""
  rng = np.random.default_rng(2)
  factors = rng.normal(size=(80, 4))
  codes = [factors + 0.1 * rng.normal(size=(80, 4)),
           factors[:, [2, 0, 3, 1]] * [1, -1, 1, -1] + 0.2 * rng.normal(size=(80, 4)),
           factors @ rng.normal(size=(4, 4)),
           np.concatenate([factors[:, :3], 0.01 * rng.normal(size=(80, 1))], axis=1)]
  kl = [np.full(4, 2.0), np.full(4, 1.5), np.full(4, 1.0), np.array([2.0, 2.0, 2.0, 0.001])]
  got = udr.udr(codes, kl, correlation=correlation)["scores"]
  np.testing.assert_allclose(got, brute_force_udr(codes, kl, correlation), rtol=1e-9, atol=1e-12)
  assert got[2] < min(got[0], got[1])        # the mixed run agrees least with the others


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_invariant_to_permuting_and_flipping_a_runs_latents(correlation):
  """Relabelling a run's latents (with their KLs) and flipping signs changes
  no score."""
  rng = np.random.default_rng(3)
  factors = rng.normal(size=(200, 5))
  codes = [factors + s * rng.normal(size=(200, 5)) for s in (0.1, 0.3, 0.6)]
  codes[2][:, :2] = codes[2][:, :2] @ np.array([[1.0, 1.0], [-1.0, 1.0]])
  kl = [np.array([1.0, 2.0, 0.5, 3.0, 0.005]), np.full(5, 1.0), np.full(5, 0.7)]
  base = udr.udr(codes, kl, correlation=correlation)["scores"]
  permutation = np.array([3, 0, 4, 1, 2])
  changed = [codes[0], codes[1][:, permutation] * [-1, 1, 1, -1, 1], codes[2]]
  changed_kl = [kl[0], kl[1][permutation], kl[2]]
  np.testing.assert_allclose(udr.udr(changed, changed_kl, correlation=correlation)["scores"],
                             base, rtol=1e-6, atol=1e-9)


def test_bad_input_is_refused():
  codes = np.zeros((10, 3))
  with pytest.raises(ValueError, match="at least two"):
    udr.udr([codes], [np.ones(3)])
  with pytest.raises(ValueError, match="same shape"):
    udr.udr([codes, np.zeros((10, 4))], [np.ones(3), np.ones(4)])
  with pytest.raises(ValueError, match="correlation must be one of"):
    udr.udr([codes, codes], [np.ones(3)] * 2, correlation="pearson")
