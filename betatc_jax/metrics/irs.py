"""IRS, the Interventional Robustness Score (Suter et al., 2019), as
disentanglement_lib computes it.

How much a latent moves when the factors other than its parent change.
With z_j the codes (e.g. the posterior means) of the points and, for factor
k and each of its values v, the group G_kv of points with v_k = v:

    dev_jk = mean_v  Q_q( |z_j − mean_{G_kv} z_j| over G_kv )
    IRS_jk = 1 − dev_jk / max_n |z_j(n) − mean z_j|

(Q_q the q-quantile, q = 0.99 by default; q = 1 is the paper's maximum).
Each latent's score is max_k IRS_jk, its parent that argmax, and

    IRS = Σ_j w_j max_k IRS_jk / Σ_j w_j,   w_j = max_n |z_j(n) − mean z_j|

so latents that barely move weigh little. Constant latents are left out
(``num_active_dims`` counts the rest); with none left, IRS = 0. The factors
are discretised as disentanglement_lib does (``num_bins`` equal-width bins
each; None keeps them as they are).
"""

from __future__ import annotations

import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, discretize


def irs_from_groups(codes: np.ndarray, factors: np.ndarray, quantile: float = 0.99
                    ) -> dict[str, float | np.ndarray]:
  """IRS (module docstring) of ``codes`` [N, D] (no constant column) and
  discrete ``factors`` [N, K], on every point given.

  Returns:
    ``irs``, ``irs_matrix`` [D, K], ``irs_per_latent`` [D], ``parents`` [D]
    and ``max_deviations`` [D].
  """
  codes = np.asarray(codes, np.float64)
  max_deviations = np.max(np.abs(codes - codes.mean(0)), axis=0)               # [D]
  deviations = np.zeros((codes.shape[1], factors.shape[1]))
  for k in range(factors.shape[1]):
    values = np.unique(factors[:, k])
    for v in values:
      group = codes[factors[:, k] == v]
      deviations[:, k] += np.percentile(np.abs(group - group.mean(0)), 100 * quantile, axis=0)
    deviations[:, k] /= len(values)
  matrix = 1.0 - deviations / max_deviations[:, None]
  per_latent = matrix.max(axis=1)
  total = float(np.sum(max_deviations))
  score = (float(np.sum(per_latent * max_deviations) / total) if total > 0
           else float(np.mean(per_latent)))
  return {"irs": score, "irs_matrix": matrix, "irs_per_latent": per_latent,
          "parents": matrix.argmax(axis=1), "max_deviations": max_deviations}


def irs(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
        num_train: int = 10_000, quantile: float = 0.99, num_bins: int | None = 20
        ) -> dict[str, float | int | np.ndarray]:
  """IRS of ``codes`` [N, D] for int ``factors`` [N, K] on min(``num_train``,
  N) points drawn by ``rng``, with disentanglement_lib's settings (10,000
  points, q = 0.99, factors in 20 histogram bins).

  Returns:
    ``irs`` and ``num_active_dims``, with ``irs_from_groups``' arrays for
    the active latents.

  Raises:
    ValueError: bad shapes, or a quantile outside (0, 1].
  """
  codes, factors = check_codes_and_factors(codes, factors)
  if not 0 < quantile <= 1:
    raise ValueError(f"quantile must be in (0, 1], got {quantile}.")
  rows = np.sort(rng.choice(len(codes), size=min(num_train, len(codes)), replace=False))
  z, v = codes[rows].astype(np.float64), factors[rows]
  if num_bins is not None:
    v = discretize(v.astype(np.float64), num_bins)
  active = z[:, z.var(axis=0) > 0]
  if active.shape[1] == 0:
    return {"irs": 0.0, "num_active_dims": 0}
  return {**irs_from_groups(active, v, quantile), "num_active_dims": int(active.shape[1])}
