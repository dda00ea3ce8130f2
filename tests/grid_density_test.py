"""The grid-and-spline marginal densities (metrics/grid_density.py) against
the exact mixture densities: a VAE-like pool (collapsed latents, tight
clusters with empty gaps between them, widths over two decades), the
fallbacks (a grid too fine to save work, a check that fails), and MIG and
the ELBO decomposition computed both ways."""

import jax
import numpy as np

from betatc_jax import metrics
from betatc_jax.metrics import entropy
from betatc_jax.metrics.grid_density import marginal_log_density


def vae_like_pool(rng, n=20_000):
  """[n, 4] posteriors: a collapsed latent (σ ≈ 0.9), one coding 16
  positions as tight clusters (σ 0.02–0.05, gaps of ~0.4 between them),
  one smooth informative latent, and one whose widths span 0.02–1."""
  position = rng.integers(0, 16, n)
  mu = np.stack([0.05 * rng.normal(size=n), -3 + 0.4 * position + 0.01 * rng.normal(size=n),
                 rng.normal(size=n), rng.normal(size=n)], 1)
  sd = np.stack([rng.uniform(0.85, 0.95, n), rng.uniform(0.02, 0.05, n),
                 rng.uniform(0.1, 0.3, n), np.exp(rng.uniform(np.log(0.02), 0.0, n))], 1)
  return mu.astype(np.float32), (2 * np.log(sd)).astype(np.float32)


def test_the_spline_equals_the_exact_density_to_float32_rounding():
  rng = np.random.default_rng(0)
  mu, logvar = vae_like_pool(rng)
  points = rng.choice(len(mu), 5_000, replace=False)
  z = entropy.sample_posterior(jax.random.key(0), mu[points], logvar[points])
  exact = entropy.mixture_log_density(z, mu, logvar, with_joint=False)[0]
  got, info = marginal_log_density(z, mu, logvar)
  assert np.max(np.abs(got - exact)) <= 1e-4
  assert info["max_error"] <= 1e-4
  assert info["grid_fraction"] < 0.5              # the point: less work than exact


def test_a_grid_that_saves_nothing_or_misses_the_tolerance_is_exact_instead():
  rng = np.random.default_rng(1)
  mu, logvar = vae_like_pool(rng, n=3_000)
  logvar[0, 1] = -190.0                            # σ_min ~ 1e-41: no useful grid
  z = entropy.sample_posterior(jax.random.key(1), mu[:500], logvar[:500])
  exact = entropy.mixture_log_density(z, mu, logvar, with_joint=False)[0]
  got, info = marginal_log_density(z, mu, logvar)
  np.testing.assert_allclose(got[:, 1], exact[:, 1], rtol=0, atol=1e-6)
  strict, info = marginal_log_density(z, mu, logvar, tolerance=0.0)
  np.testing.assert_allclose(strict, exact, rtol=0, atol=1e-6)
  assert info["grid_fraction"] == 1.0 and info["max_error"] == 0.0


def test_mig_and_the_elbo_decomposition_agree_both_ways():
  """Same key, same points: the estimates differ only by the densities'
  rounding (the grid spends no random draws)."""
  rng = np.random.default_rng(2)
  mu, logvar = vae_like_pool(rng, n=12_000)
  factors = np.stack([rng.integers(0, 3, len(mu)), ((mu[:, 1] + 3) / 0.4).round().astype(int)], 1)
  mig = {d: metrics.mig(mu, logvar, factors, (3, 16), key=jax.random.key(3), num_samples=4_000,
                        density=d) for d in ("grid", "exact")}
  np.testing.assert_allclose(mig["grid"]["mutual_info"], mig["exact"]["mutual_info"], atol=1e-4)
  assert abs(mig["grid"]["mig"] - mig["exact"]["mig"]) <= 1e-4
  assert mig["exact"]["mig"] > 0.5 and 0 < mig["grid"]["density_max_error"] <= 1e-4
  elbo = {d: metrics.elbo_decomposition(mu, logvar, key=jax.random.key(4), num_samples=4_000,
                                        density=d) for d in ("grid", "exact")}
  for key in ("mi", "tc", "dim_kl"):
    assert abs(elbo["grid"][key] - elbo["exact"][key]) <= 1e-4, key
