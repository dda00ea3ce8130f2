"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, 2018).

A random forest per factor (classification of the factor's class from the
codes) gives an importance matrix R [D, K]: R[j, k] is the importance of
code j for factor k (its impurity-based feature importance). Then, as in
disentanglement_lib,

    disentanglement = Σ_j ρ_j (1 − H_K(R[j, :] / Σ_k R[j, k])),  ρ_j = Σ_k R[j, k] / Σ R
    completeness    = Σ_k ρ_k (1 − H_D(R[:, k] / Σ_j R[j, k])),  ρ_k = Σ_j R[j, k] / Σ R
    informativeness = mean_k test accuracy of factor k's forest

with H_K the entropy in base K (so each term is in [0, 1]). The paper used
lasso and random forests; disentanglement_lib uses gradient boosting. We
use random forests (``num_trees`` trees, scikit-learn, every split choosing
among all codes, so importance goes to the informative ones), which handle
the 40 orientation classes in one model.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, split_rows


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
  p = p / p.sum(axis=axis, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, p * np.log(p), 0.0)
  return -terms.sum(axis=axis) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
  """(disentanglement, completeness) from an importance matrix R [D, K] >= 0."""
  r = np.asarray(importance, np.float64) + 1e-11
  d, k = r.shape
  disentanglement_per_code = 1.0 - _entropy(r, max(k, 2), axis=1)
  completeness_per_factor = 1.0 - _entropy(r, max(d, 2), axis=0)
  code_weight = r.sum(1) / r.sum()
  factor_weight = r.sum(0) / r.sum()
  if k == 1:
    disentanglement_per_code = np.ones(d)
  return (float(np.sum(disentanglement_per_code * code_weight)),
          float(np.sum(completeness_per_factor * factor_weight)))


def dci(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
        num_train: int = 10_000, num_test: int = 5_000, num_trees: int = 50
        ) -> dict[str, float | np.ndarray]:
  """DCI scores of ``codes`` [N, D] for ``factors`` int [N, K].

  Args:
    codes, factors: one row per dataset point.
    rng: draws the train and test points and seeds the forests.
    num_train, num_test: points (disjoint) for fitting and for accuracy.
    num_trees: trees per forest.

  Returns:
    ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness``
    and ``importance`` [D, K].
  """
  from sklearn.ensemble import RandomForestClassifier

  codes, factors = check_codes_and_factors(codes, factors)
  train, test = split_rows(len(codes), num_train, num_test, rng)
  importance = np.zeros((codes.shape[1], factors.shape[1]))
  accuracy = np.zeros(factors.shape[1])
  for k in range(factors.shape[1]):
    forest = RandomForestClassifier(n_estimators=num_trees, min_samples_leaf=2, max_features=None,
                                    n_jobs=-1,
                                    random_state=int(rng.integers(2**31)))
    forest.fit(codes[train], factors[train, k])
    importance[:, k] = forest.feature_importances_
    forest.n_jobs = 1  # threaded predict sums tree outputs in any order: ties would flip
    accuracy[k] = forest.score(codes[test], factors[test, k])
  disentanglement, completeness = dci_from_importance(importance)
  return {"dci_disentanglement": disentanglement, "dci_completeness": completeness,
          "dci_informativeness": float(accuracy.mean()), "importance": importance}
