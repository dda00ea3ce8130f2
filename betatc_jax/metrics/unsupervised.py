"""Unsupervised scores of a representation: how dependent its code
dimensions are, without ground-truth factors (disentanglement_lib's
``unsupervised_metrics``).

With C [D, D] the covariance of the codes (e.g. the posterior means) over
the points and Λ = diag(C) its diagonal:

* Gaussian total correlation: the KL divergence from N(0, C) to the product
  of its marginals N(0, Λ),

      TC_G = ½ (Σ_j log C_jj − log det C)

* Gaussian Wasserstein dependency: the squared 2-Wasserstein distance
  between the same two Gaussians,

      W_G = tr C + tr Λ − 2 tr (Λ^½ C Λ^½)^½ = 2 tr C − 2 Σ_i √λ_i(Λ^½ C Λ^½)

  and ``gaussian_wasserstein_correlation_norm`` = W_G / tr C.
* Mutual information score: each code dimension cut into ``num_bins``
  equal-width bins (as MIG's histogram variant), the mean discrete mutual
  information (nats) over the ordered pairs of different dimensions.

Each is 0 for independent dimensions and grows with their dependence.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.metrics.codes import discretize
from betatc_jax.metrics.mig import discrete_mutual_info


UNSUPERVISED_SCORES = ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                       "gaussian_wasserstein_correlation_norm", "mutual_info_score")


def _check_covariance(cov: np.ndarray) -> np.ndarray:
  cov = np.asarray(cov, np.float64)
  if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.all(np.isfinite(cov)):
    raise ValueError(f"a finite square covariance [D, D] is needed, got shape {cov.shape}.")
  if np.any(np.diag(cov) <= 0):
    raise ValueError("every code dimension needs a positive variance (a constant code has "
                     "no Gaussian total correlation).")
  return cov


def gaussian_total_correlation(cov: np.ndarray) -> float:
  """TC_G (module docstring) of a covariance ``cov`` [D, D], in nats."""
  cov = _check_covariance(cov)
  sign, log_det = np.linalg.slogdet(cov)
  if sign <= 0:
    return float("inf")                      # singular: the dimensions are dependent
  return float(0.5 * (np.sum(np.log(np.diag(cov))) - log_det))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
  """W_G (module docstring) of a covariance ``cov`` [D, D]."""
  cov = _check_covariance(cov)
  root = np.sqrt(np.diag(cov))
  eigenvalues = np.linalg.eigvalsh(root[:, None] * cov * root[None, :])
  return float(2.0 * np.trace(cov) - 2.0 * np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def mutual_info_score(codes: np.ndarray, num_bins: int = 20) -> float:
  """The mean discrete mutual information (nats) between different dimensions
  of ``codes`` [N, D >= 2], each cut into ``num_bins`` equal-width bins."""
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[1] < 2:
    raise ValueError(f"codes [N, D >= 2] needed, got {codes.shape}.")
  binned = discretize(codes, num_bins)
  d = codes.shape[1]
  pairs = [discrete_mutual_info(binned[:, i], binned[:, j])
           for i in range(d) for j in range(i + 1, d)]
  return float(2.0 * np.sum(pairs) / (d * d - d))


def unsupervised_scores(codes: np.ndarray, *, rng: np.random.Generator,
                        num_train: int = 10_000, num_bins: int = 20) -> dict[str, float]:
  """The scores of the module docstring on ``num_train`` points of ``codes``
  [N, D] drawn without replacement (all of them when N is smaller), as
  disentanglement_lib's defaults (10,000 points, 20 bins).

  A constant dimension (a collapsed latent's mean) is independent of the
  others: it adds 0 to TC_G and W_G and is left out of them, as the limit of
  a vanishing variance (disentanglement_lib would take log 0); its pairs
  count 0 in the mutual information score, as in disentanglement_lib.

  Returns:
    ``UNSUPERVISED_SCORES``: ``gaussian_total_correlation``,
    ``gaussian_wasserstein_correlation``,
    ``gaussian_wasserstein_correlation_norm`` and ``mutual_info_score``
    (the Gaussian ones 0 with fewer than two varying dimensions).
  """
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2 or len(codes) < 2 or not np.all(np.isfinite(codes)):
    raise ValueError(f"finite codes [N >= 2, D] needed, got {codes.shape}.")
  rows = rng.choice(len(codes), size=min(num_train, len(codes)), replace=False)
  sample = codes[np.sort(rows)]
  info = mutual_info_score(sample, num_bins) if sample.shape[1] > 1 else 0.0
  varying = sample[:, np.ptp(sample, axis=0) > 0]    # a constant dimension adds 0 to TC_G, W_G
  if varying.shape[1] < 2:
    return {**dict.fromkeys(UNSUPERVISED_SCORES, 0.0), "mutual_info_score": info}
  cov = np.atleast_2d(np.cov(varying, rowvar=False))
  wasserstein = gaussian_wasserstein_correlation(cov)
  return {"gaussian_total_correlation": gaussian_total_correlation(cov),
          "gaussian_wasserstein_correlation": wasserstein,
          "gaussian_wasserstein_correlation_norm": wasserstein / float(np.trace(cov)),
          "mutual_info_score": info}
