"""Dataset-level ELBO decomposition (Chen et al., 2018, Sec. 3–4).

With one z_n ~ q(z|x_n) per point and q(z) = (1/N) Σ_n q(z|x_n) over the
whole dataset, on a random subset S of the points (the paper: 10,000):

    E log q(z|x)       ≈ mean_{i∈S} Σ_j log q(z_ij | x_i)
    E log q(z)         ≈ mean_{i∈S} log (1/N Σ_n q(z_i | x_n))
    E log q(z_j)       ≈ mean_{i∈S} log (1/N Σ_n q(z_ij | x_n))
    mi     = E log q(z|x) − E log q(z)
    tc     = E log q(z) − Σ_j E log q(z_j)
    dim_kl = Σ_j E log q(z_j) − E log p(z)
    kl     = mean over all N of the analytic KL(q(z|x_n) ‖ N(0, I))

The mixture densities run in chunks, so memory is bounded by the chunk
size and S × N × D is never held at once: log q(z) exactly
(``entropy.joint_log_density``), log q(z_j) as ``metrics.mig`` takes its
marginals (``density="grid"`` by default, ``"exact"``).
E log p(x|z) needs the decoder; ``betatc_jax.evaluate`` computes it for the
same S points and z.
"""

from __future__ import annotations

import jax
import numpy as np

from betatc_jax.estimators import gaussian_log_density
from betatc_jax.metrics.entropy import DEFAULT_CHUNK, joint_log_density, sample_posterior
from betatc_jax.metrics.grid_density import pool_marginal_log_density


def _log_normal(x, mu, logvar) -> np.ndarray:
  return np.asarray(gaussian_log_density(x, mu, logvar), np.float64)


def elbo_decomposition(mu: np.ndarray, logvar: np.ndarray, *, key: jax.Array,
                       num_samples: int = 10_000, chunk: int = DEFAULT_CHUNK,
                       density: str = "grid") -> dict[str, np.ndarray | float]:
  """The KL part of the ELBO, decomposed, over a whole dataset.

  Args:
    mu, logvar: [N, D] posteriors of every point.
    key: jax PRNG key (z and the subset S).
    num_samples: |S|.
    chunk: pool rows per step.
    density: how log q(z_j) is computed: "grid" or "exact" (``metrics.mig``).

  Returns:
    Scalars ``mi``, ``tc``, ``dim_kl``, ``kl``, ``log_q_zx``, ``log_q_z``,
    ``log_prod_q_zj``, ``log_p_z`` (dataset means), ``dim_kl_per_dim`` [D]
    (KL(q(z_j) ‖ p(z_j)) for each j), and ``rows`` [S] and ``z`` [S, D]
    (the points and samples used, for E log p(x|z)), and
    ``density_max_error`` (nats; 0 when exact).
  """
  mu, logvar = np.asarray(mu, np.float32), np.asarray(logvar, np.float32)
  if mu.ndim != 2 or logvar.shape != mu.shape:
    raise ValueError(f"mu and logvar must be [N, D] of one shape, got {mu.shape}, {logvar.shape}.")
  z_key, idx_key = jax.random.split(key)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(idx_key)).tolist())
  n = len(mu)
  rows = np.sort(rng.choice(n, min(num_samples, n), replace=False))
  z = sample_posterior(z_key, mu[rows], logvar[rows])
  marginal, error = pool_marginal_log_density(z, mu, logvar, density=density, chunk=chunk)
  joint = joint_log_density(z, mu, logvar, chunk=chunk)
  log_q_zx = _log_normal(z, mu[rows], logvar[rows]).sum(-1)
  log_p_z_per_dim = _log_normal(z, 0.0, 0.0)
  log_q_z = joint.astype(np.float64)
  log_prod = marginal.sum(-1, dtype=np.float64)
  kl = 0.5 * np.sum(mu.astype(np.float64) ** 2 + np.exp(logvar) - 1.0 - logvar, -1)
  return {
      "mi": float(np.mean(log_q_zx - log_q_z)),
      "tc": float(np.mean(log_q_z - log_prod)),
      "dim_kl": float(np.mean(log_prod - log_p_z_per_dim.sum(-1))),
      "kl": float(np.mean(kl)),
      "log_q_zx": float(np.mean(log_q_zx)),
      "log_q_z": float(np.mean(log_q_z)),
      "log_prod_q_zj": float(np.mean(log_prod)),
      "log_p_z": float(np.mean(log_p_z_per_dim.sum(-1))),
      "dim_kl_per_dim": np.mean(marginal - log_p_z_per_dim, axis=0),
      "rows": rows,
      "z": z,
      "density_max_error": error,
  }
