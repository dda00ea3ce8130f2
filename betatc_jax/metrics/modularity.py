"""Modularity and explicitness (Ridgeway & Mozer, 2018), as in disentanglement_lib.

Modularity: each code should carry information about at most one factor.
With m [D, K] the mutual information between code j (discretized into
``num_bins`` equal-width bins) and factor k, θ_j = max_k m_jk and t_j the
vector that keeps θ_j at the argmax and 0 elsewhere,

    δ_j = Σ_k (m_jk − t_jk)² / (θ_j² (K − 1)),     modularity = mean_j (1 − δ_j)

A code with θ_j = 0 (it carries nothing, e.g. a collapsed latent) scores 0,
as in disentanglement_lib, so unused latents lower the mean.

Explicitness: how linearly decodable each factor is. Per factor, a
multinomial logistic regression (``metrics.linear``, C = 1) on all codes;
for each class the ROC AUC of its predicted probability on the test points
(one class against the rest); explicitness = the mean over classes, then
over factors. 0.5 is chance, 1 perfect.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.metrics.codes import (check_codes_and_factors, class_labels, discretize,
                                      split_rows)
from betatc_jax.metrics.linear import fit_softmax_regression, roc_auc
from betatc_jax.metrics.mig import discrete_mutual_info


def modularity_from_mutual_info(mutual_info: np.ndarray) -> float:
  """Modularity (module docstring) of a mutual-information matrix m [D, K] >= 0."""
  m = np.asarray(mutual_info, np.float64)
  if m.ndim != 2 or m.shape[1] < 2:
    raise ValueError(f"modularity needs m [D, K >= 2], got {m.shape}.")
  theta = m.max(axis=1)
  squared = m ** 2
  off_peak = squared.sum(axis=1) - theta ** 2                 # Σ_{k ≠ argmax} m_jk²
  with np.errstate(divide="ignore", invalid="ignore"):
    delta = off_peak / (theta ** 2 * (m.shape[1] - 1))
  return float(np.mean(np.where(theta > 0, 1.0 - delta, 0.0)))


def modularity_explicitness(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
                            num_train: int = 10_000, num_test: int = 5_000, num_bins: int = 20
                            ) -> dict[str, float | np.ndarray]:
  """Modularity and explicitness of ``codes`` [N, D] for int ``factors`` [N, K].

  Args:
    codes, factors: one row per dataset point (e.g. the posterior means).
    rng: draws the disjoint train and test points.
    num_train, num_test: as in disentanglement_lib (10,000, 5,000); capped
      at half the points each. Modularity uses the train points.
    num_bins: the discretization of the codes for the mutual information.

  Returns:
    ``modularity``, ``explicitness`` (test AUC), ``explicitness_train`` and
    ``modularity_mutual_info`` m [D, K].
  """
  codes, factors = check_codes_and_factors(codes, factors)
  train, test = split_rows(len(codes), num_train, num_test, rng)
  labels = class_labels(factors)
  binned = discretize(codes[train], num_bins)
  m = np.array([[discrete_mutual_info(binned[:, j], labels[train, k])
                 for k in range(labels.shape[1])] for j in range(codes.shape[1])])
  auc_train, auc_test = [], []
  for k in range(labels.shape[1]):
    num_classes = int(labels[:, k].max()) + 1
    model = fit_softmax_regression(codes[train], labels[train, k], num_classes)
    for rows_, out in ((train, auc_train), (test, auc_test)):
      scores = model.log_proba(codes[rows_])
      per_class = [roc_auc(scores[:, c], labels[rows_, k] == c) for c in range(num_classes)]
      out.append(np.nanmean(per_class))
  return {"modularity": modularity_from_mutual_info(m) if m.shape[1] > 1 else float("nan"),
          "explicitness": float(np.mean(auc_test)), "explicitness_train": float(np.mean(auc_train)),
          "modularity_mutual_info": m}
