"""Metrics: MIG (both estimators) and the ELBO decomposition, against brute
force and bounds."""

import math

import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from betatc_jax import metrics
from betatc_jax.metrics import entropy

SIZES = (3, 4, 5)


def _grid(repeats=4):
  grids = np.meshgrid(*[np.arange(n) for n in SIZES], indexing="ij")
  factors = np.stack([g.reshape(-1) for g in grids], 1)
  return np.repeat(factors, repeats, axis=0)                       # [240, 3]


def _perfect(factors, extra_dims=2, seed=0):
  """Each factor in its own latent, tight posteriors; plus noise latents."""
  rng = np.random.default_rng(seed)
  mu = np.concatenate([(factors - factors.mean(0)) / factors.std(0) * 3.0,
                       rng.normal(size=(len(factors), extra_dims))], 1).astype(np.float32)
  logvar = np.full_like(mu, -8.0)
  logvar[:, len(SIZES):] = 0.0
  return mu, logvar


# ------------------------------------------------------------------ MIG

def test_perfect_representation_scores_high():
  factors = _grid()
  mu, logvar = _perfect(factors)
  out = metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(0))
  assert out["mig"] >= 0.9, out["mig_per_factor"]
  # The information about each factor is all of its entropy, log |V_k|.
  np.testing.assert_allclose(out["factor_entropies"], np.log(SIZES), rtol=1e-6)
  np.testing.assert_allclose(out["mutual_info"].max(1), np.log(SIZES), rtol=0.05)


def test_noise_scores_low():
  factors = _grid(repeats=20)
  rng = np.random.default_rng(1)
  mu = rng.normal(size=(len(factors), 4)).astype(np.float32)
  logvar = np.full_like(mu, -1.0)
  assert metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(1))["mig"] <= 0.05


def test_duplicated_latent_scores_low_for_that_factor():
  factors = _grid()
  mu, logvar = _perfect(factors)
  mu = np.concatenate([mu, mu[:, :1]], 1)                         # factor 0 in two latents
  logvar = np.concatenate([logvar, logvar[:, :1]], 1)
  out = metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(2))
  assert out["mig_per_factor"][0] <= 0.1
  assert out["mig_per_factor"][1] >= 0.9 and out["mig_per_factor"][2] >= 0.9


def test_exclude_leaves_factors_out_of_the_mean():
  factors = _grid()
  mu, logvar = _perfect(factors)
  mu[:, 0] = np.random.default_rng(3).normal(size=len(mu))        # factor 0 lost
  logvar[:, 0] = 0.0
  out = metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(3), exclude=(0,))
  np.testing.assert_allclose(out["mig"], np.mean(out["mig_per_factor"][1:]))
  assert out["mig"] >= 0.9 > np.mean(out["mig_per_factor"])


def brute_force_mig(z, mu, logvar, factors):
  """The estimator written directly: float64, every point in every pool."""
  sd = np.exp(0.5 * logvar.astype(np.float64))

  def h(pool):
    dens = norm.logpdf(z[pool][:, None, :], mu[pool][None], sd[pool][None])   # [P, P, D]
    return -np.mean(logsumexp(dens, axis=1) - math.log(len(pool)), axis=0)

  n, d = z.shape
  h_z = h(np.arange(n))
  mi = np.zeros((factors.shape[1], d))
  for k in range(factors.shape[1]):
    cond = sum(np.mean(factors[:, k] == v) * h(np.flatnonzero(factors[:, k] == v))
               for v in np.unique(factors[:, k]))
    mi[k] = np.maximum(h_z - cond, 0)
  top = np.sort(mi, 1)[:, ::-1]
  return np.mean((top[:, 0] - top[:, 1]) / np.log(SIZES)), mi, h_z


def test_mig_matches_brute_force():
  factors = _grid(repeats=2)
  rng = np.random.default_rng(4)
  mu = (np.concatenate([factors[:, :2] * 0.7, rng.normal(size=(len(factors), 2))], 1)
        + 0.3 * rng.normal(size=(len(factors), 4))).astype(np.float32)
  logvar = rng.uniform(-2, 0, mu.shape).astype(np.float32)
  z = entropy.sample_posterior(jax.random.key(5), mu, logvar)
  got = metrics.mig_from_samples(z, mu, logvar, factors, SIZES, rng=np.random.default_rng(0),
                                 num_samples=10_000, chunk=16)   # chunks smaller than the pools
  want, mi, h_z = brute_force_mig(z, mu, logvar, factors)
  np.testing.assert_allclose(got["entropies"], h_z, rtol=1e-4)
  np.testing.assert_allclose(got["mutual_info"], mi, atol=1e-4)
  np.testing.assert_allclose(got["mig"], want, atol=1e-4)


def test_subsampled_entropy_is_close_to_the_full_one():
  """num_samples < pool: a Monte-Carlo estimate of the same entropies."""
  factors = _grid(repeats=20)                                       # 1,200 points
  mu, logvar = _perfect(factors)
  logvar[:] = -1.0
  full = metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(6), num_samples=10_000)
  sub = metrics.mig(mu, logvar, factors, SIZES, key=jax.random.key(6), num_samples=400)
  np.testing.assert_allclose(sub["entropies"], full["entropies"], rtol=0.05)
  assert abs(sub["mig"] - full["mig"]) < 0.05


def test_mig_rejects_bad_shapes():
  with pytest.raises(ValueError, match="factors must be"):
    metrics.mig(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((3, 3), int), SIZES,
                key=jax.random.key(0))


# --------------------------------------------------------- histogram MIG

def test_discrete_mutual_info():
  a = np.array([0, 0, 1, 1, 2, 2])
  np.testing.assert_allclose(metrics.discrete_mutual_info(a, a), math.log(3))
  np.testing.assert_allclose(metrics.discrete_mutual_info(a, np.array([0, 1, 0, 1, 0, 1])), 0.0,
                             atol=1e-12)


def test_histogram_mig_bounds():
  factors = _grid(repeats=20)
  mu, _ = _perfect(factors)
  assert metrics.mig_histogram(mu, factors)["mig"] >= 0.9
  noise = np.random.default_rng(7).normal(size=(len(factors), 5))
  assert metrics.mig_histogram(noise, factors)["mig"] <= 0.05
  dup = np.concatenate([mu, mu[:, :1]], 1)
  assert metrics.mig_histogram(dup, factors)["mig_per_factor"][0] <= 0.05


# --------------------------------------------------------- ELBO decomposition

def brute_force_decomposition(z, rows, mu, logvar):
  sd = np.exp(0.5 * logvar.astype(np.float64))
  dens = norm.logpdf(z[:, None, :], mu[None], sd[None])               # [S, N, D]
  log_q_z = logsumexp(dens.sum(-1), axis=1) - math.log(len(mu))
  log_q_zj = logsumexp(dens, axis=1) - math.log(len(mu))
  log_q_zx = norm.logpdf(z, mu[rows], sd[rows]).sum(-1)
  log_p_z = norm.logpdf(z).sum(-1)
  return {"mi": np.mean(log_q_zx - log_q_z), "tc": np.mean(log_q_z - log_q_zj.sum(-1)),
          "dim_kl": np.mean(log_q_zj.sum(-1) - log_p_z)}


def test_elbo_decomposition_matches_brute_force():
  rng = np.random.default_rng(8)
  mu = rng.normal(size=(300, 3)).astype(np.float32)
  mu[:, 2] = mu[:, 0] + 0.1 * mu[:, 2]                               # correlated: TC > 0
  logvar = rng.uniform(-3, 0, mu.shape).astype(np.float32)
  out = metrics.elbo_decomposition(mu, logvar, key=jax.random.key(0), num_samples=100, chunk=64)
  assert out["rows"].shape == (100,) and out["z"].shape == (100, 3)
  want = brute_force_decomposition(out["z"], out["rows"], mu, logvar)
  for k, v in want.items():
    np.testing.assert_allclose(out[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
  assert out["tc"] > 0.5
  kl = 0.5 * np.mean(np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, -1))
  np.testing.assert_allclose(out["kl"], kl, rtol=1e-5)


def test_elbo_decomposition_of_independent_latents_has_small_tc():
  """mi + tc + dim_kl estimates E KL(q(z|x) ‖ p(z)) (the analytic kl)."""
  rng = np.random.default_rng(9)
  mu = rng.normal(size=(4000, 3)).astype(np.float32)
  logvar = np.full_like(mu, -2.0)
  out = metrics.elbo_decomposition(mu, logvar, key=jax.random.key(1), num_samples=2000)
  assert abs(out["tc"]) < 0.05
  np.testing.assert_allclose(out["mi"] + out["tc"] + out["dim_kl"], out["kl"], rtol=0.03)


# --------------------------------------------------------- FactorVAE and DCI

def _dataset(repeats=1):
  from betatc_jax.data.ground_truth import GroundTruthDataset
  factors = _grid(repeats).astype(np.int32)
  images = np.zeros((len(factors), 1, 1, 1), np.uint8)
  return GroundTruthDataset(images, factors, ("a", "b", "c"), SIZES)


def test_factorvae_perfect_vs_noise():
  from betatc_jax.metrics.factorvae import factorvae_score
  ds = _dataset()
  perfect = ds.factors.astype(np.float64) + np.array([0.0, 0.0, 0.0])
  perfect = np.concatenate([perfect, np.zeros((len(ds), 1))], 1)      # one collapsed latent
  out = factorvae_score(perfect, ds, rng=np.random.default_rng(0), num_train=500, num_eval=300)
  assert out["factorvae_score"] == 1.0 and out["num_active_dims"] == 3
  noise = np.random.default_rng(1).normal(size=(len(ds), 4))
  out = factorvae_score(noise, ds, rng=np.random.default_rng(2), num_train=500, num_eval=300)
  assert out["factorvae_score"] <= 0.6     # chance is about 1/3 for K = 3


def test_dci_perfect_vs_noise():
  from betatc_jax.metrics.dci import dci
  ds = _dataset(repeats=20)
  rng = np.random.default_rng(3)
  perfect = ds.factors + 0.01 * rng.normal(size=ds.factors.shape)
  out = dci(perfect, ds.factors, rng=np.random.default_rng(4), num_trees=20)
  assert out["dci_disentanglement"] >= 0.9 and out["dci_completeness"] >= 0.9
  assert out["dci_informativeness"] >= 0.95
  noise = rng.normal(size=(len(ds), 5))
  out = dci(noise, ds.factors, rng=np.random.default_rng(5), num_trees=20)
  assert out["dci_disentanglement"] <= 0.2 and out["dci_informativeness"] <= 0.5


def test_dci_from_importance_exact():
  from betatc_jax.metrics.dci import dci_from_importance
  d, c = dci_from_importance(np.eye(3))
  np.testing.assert_allclose([d, c], [1.0, 1.0], atol=1e-6)
  d, c = dci_from_importance(np.ones((4, 2)))
  np.testing.assert_allclose([d, c], [0.0, 0.0], atol=1e-6)
  # One code explains both factors: not disentangled, but complete.
  d, c = dci_from_importance(np.array([[1.0, 1.0], [0.0, 0.0]]))
  np.testing.assert_allclose([d, c], [0.0, 1.0], atol=1e-6)


def test_mixture_density_exact_when_the_fast_bound_underflows():
  """One very tight posterior (logvar −190) lifts the bound ~94 nats above all
  other terms: those rows take the exact fallback and still match scipy."""
  rng = np.random.default_rng(10)
  mu = rng.normal(size=(50, 2)).astype(np.float32)
  logvar = rng.uniform(-1, 0, mu.shape).astype(np.float32)
  logvar[0] = -190.0
  z = rng.normal(size=(30, 2)).astype(np.float32)
  marginal, joint = entropy.mixture_log_density(z, mu, logvar, chunk=16)
  dens = norm.logpdf(z[:, None, :].astype(np.float64), mu[None], np.exp(0.5 * logvar[None].astype(np.float64)))
  np.testing.assert_allclose(marginal, logsumexp(dens, 1) - math.log(50), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(joint, logsumexp(dens.sum(-1), 1) - math.log(50), rtol=1e-5, atol=1e-4)
  assert np.all(np.isfinite(marginal)) and np.all(np.isfinite(joint))
