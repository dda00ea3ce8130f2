"""Mutual Information Gap (Chen et al., 2018, Sec. 5), two estimators.

``mig``: the paper's. With one z ~ q(z|x_n) per point,

    H(z_j)         ≈ −mean_{i ∈ S} log (1/N Σ_n q(z_ij | x_n))
    H(z_j | v_k=v) ≈ −mean_{i ∈ S_v} log (1/|P_v| Σ_{n ∈ P_v} q(z_ij | x_n)),
                     P_v = {n : v_k(n) = v}, S ⊂ pool of min(num_samples, pool) points
    I(z_j; v_k)    = max(0, H(z_j) − Σ_v p(v) H(z_j | v_k = v))
    MIG            = mean_k  (I_(1)k − I_(2)k) / H(v_k)

where I_(1)k ≥ I_(2)k are the two largest I(z_j; v_k) over j, and H(v_k) is
the factor's entropy (log |V_k| on a full grid).

Each log density above is a per-dimension mixture over a pool:
``density="grid"`` (the default) takes it from ``metrics.grid_density``
(exact on a grid, a spline between: within 1e-3 nats at every checked
point, ~1e-6 in practice), ``"exact"`` at every point
(``entropy.mixture_log_density``).

``mig_histogram``: disentanglement_lib's, on the mean codes, each code
discretized into ``num_bins`` equal-width bins, discrete mutual information.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, discretize
from betatc_jax.metrics.entropy import DEFAULT_CHUNK, sample_posterior
from betatc_jax.metrics.grid_density import pool_marginal_log_density


def _factor_entropy(labels: np.ndarray) -> float:
  p = np.bincount(labels) / len(labels)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def _check(mu, logvar, factors, factor_sizes):
  if mu.ndim != 2 or logvar.shape != mu.shape:
    raise ValueError(f"mu and logvar must be [N, D] of one shape, got {mu.shape}, {logvar.shape}.")
  if factors.ndim != 2 or len(factors) != len(mu) or factors.shape[1] != len(factor_sizes):
    raise ValueError(f"factors must be [N={len(mu)}, K={len(factor_sizes)}], got {factors.shape}.")


def mig_from_samples(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, factors: np.ndarray,
                     factor_sizes: Sequence[int], *, rng: np.random.Generator,
                     num_samples: int = 10_000, exclude: Sequence[int] = (),
                     chunk: int = DEFAULT_CHUNK, density: str = "grid"
                     ) -> dict[str, np.ndarray | float]:
  """The paper's MIG given the samples z ~ q(z|x) (formulas in the module docstring).

  Args:
    z, mu, logvar: [N, D].
    factors: int [N, K] ground-truth classes.
    factor_sizes: K class counts.
    rng: picks the S sample points of each pool.
    num_samples: S (the paper: 10,000).
    exclude: factors left out of the mean (dSprites: (0,), shape).
    chunk: pool rows per step of the chunked density.
    density: "grid" or "exact" (module docstring).

  Returns:
    ``mig`` (mean over the factors not excluded), ``mig_per_factor`` [K],
    ``mutual_info`` [K, D] (nats), ``entropies`` [D] (H(z_j)),
    ``factor_entropies`` [K], and ``density_max_error`` (nats, the largest
    checked error of any log density; 0 when exact).
  """
  mu, logvar, z = (np.asarray(a, np.float32) for a in (mu, logvar, z))
  factors = np.asarray(factors)
  _check(mu, logvar, factors, factor_sizes)

  errors = []                                    # each pool's largest checked density error

  def entropy(pool: np.ndarray) -> np.ndarray:
    points = pool if len(pool) <= num_samples else rng.choice(pool, num_samples, replace=False)
    marginal, error = pool_marginal_log_density(z[points], mu[pool], logvar[pool],
                                                density=density, chunk=chunk)
    errors.append(error)
    return -marginal.mean(0)

  everything = np.arange(len(z))
  h_z = entropy(everything)
  k_count = len(factor_sizes)
  mutual_info = np.zeros((k_count, z.shape[1]))
  factor_entropies = np.zeros(k_count)
  for k in range(k_count):
    factor_entropies[k] = _factor_entropy(factors[:, k])
    h_cond = np.zeros(z.shape[1])
    for v in np.unique(factors[:, k]):
      pool = np.flatnonzero(factors[:, k] == v)
      h_cond += len(pool) / len(z) * entropy(pool)
    mutual_info[k] = np.maximum(h_z - h_cond, 0.0)
  return _gap(mutual_info, factor_entropies, exclude) | {"entropies": h_z,
                                                         "density_max_error": max(errors)}


def _gap(mutual_info: np.ndarray, factor_entropies: np.ndarray, exclude: Sequence[int]
         ) -> dict[str, np.ndarray | float]:
  """(top-1 − top-2 MI over codes) / H(v_k), and its mean over the used factors."""
  top = np.sort(mutual_info, axis=1)[:, ::-1]
  second = top[:, 1] if top.shape[1] > 1 else np.zeros(len(top))
  with np.errstate(invalid="ignore", divide="ignore"):
    per_factor = np.where(factor_entropies > 0, (top[:, 0] - second) / factor_entropies, np.nan)
  used = [k for k in range(len(per_factor)) if k not in set(exclude) and factor_entropies[k] > 0]
  return {"mig": float(np.mean(per_factor[used])) if used else float("nan"),
          "mig_per_factor": per_factor, "mutual_info": mutual_info,
          "factor_entropies": factor_entropies}


def mig(mu: np.ndarray, logvar: np.ndarray, factors: np.ndarray, factor_sizes: Sequence[int], *,
        key: jax.Array, num_samples: int = 10_000, exclude: Sequence[int] = (),
        chunk: int = DEFAULT_CHUNK, density: str = "grid") -> dict[str, np.ndarray | float]:
  """The paper's MIG from the posteriors of every point of a dataset.

  Draws one z ~ q(z|x) per point with ``key``, then ``mig_from_samples``.

  Args:
    mu, logvar: [N, D] posteriors of all N points.
    factors: int [N, K]; factor_sizes: K class counts.
    key: jax PRNG key (sampling z and the sample points).
    num_samples: S; exclude: factors left out of the mean; chunk, density: see above.

  Returns:
    See ``mig_from_samples``.
  """
  z_key, idx_key = jax.random.split(key)
  z = sample_posterior(z_key, np.asarray(mu, np.float32), np.asarray(logvar, np.float32))
  rng = np.random.default_rng(np.asarray(jax.random.key_data(idx_key)).tolist())
  return mig_from_samples(z, mu, logvar, factors, factor_sizes, rng=rng,
                          num_samples=num_samples, exclude=exclude, chunk=chunk,
                          density=density)


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
  """I(a; b) in nats for two int label arrays [N], from their contingency table."""
  _, a = np.unique(a, return_inverse=True)
  _, b = np.unique(b, return_inverse=True)
  joint = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(joint, (a, b), 1.0)
  joint /= len(a)
  outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
  nz = joint > 0
  return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def mig_histogram(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20,
                  exclude: Sequence[int] = ()) -> dict[str, np.ndarray | float]:
  """disentanglement_lib's MIG: codes [N, D] (e.g. the posterior means)
  discretized into ``num_bins`` equal-width bins per dimension; factors int
  [N, K]. Returns the same keys as ``mig`` (without ``entropies``)."""
  codes, factors = check_codes_and_factors(codes, factors)
  binned = discretize(codes, num_bins)
  mutual_info = np.array([[discrete_mutual_info(factors[:, k], binned[:, j])
                           for j in range(codes.shape[1])] for k in range(factors.shape[1])])
  factor_entropies = np.array([_factor_entropy(np.unique(f, return_inverse=True)[1])
                               for f in factors.T])
  return _gap(mutual_info, factor_entropies, exclude)
