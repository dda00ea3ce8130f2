"""SAP score, Separated Attribute Predictability (Kumar et al., 2018), in
disentanglement_lib's two versions: for discrete factors (``sap_score``)
and for continuous ones (``sap_score_continuous``).

A score matrix A [D, K]: A[j, k] is the test accuracy of a classifier that
predicts factor k's class from code j alone. Then

    SAP = mean_k (A_(1)k − A_(2)k)

with A_(1)k ≥ A_(2)k the two largest entries of column k: a factor that
one code predicts much better than every other code scores high.

The per-code classifier: disentanglement_lib fits scikit-learn's LinearSVC
(C = 0.01) on the single code. We use the histogram classifier instead:
code j's training range cut into ``2·|V_k|`` equal-width bins, each bin
predicting the most frequent training class in it (the most frequent class
overall for an empty bin; ties to the smallest class). It is exact,
deterministic and library-free, and unlike a one-feature linear classifier
it can assign every class of a monotone code its own interval, so a
perfect code reaches accuracy 1. A code that carries nothing about factor
k scores the frequency of k's most common class (1/|V_k| on a full grid),
so a perfect representation of a full grid scores mean_k (1 − 1/|V_k|).

The continuous version, as disentanglement_lib's ``continuous_factors=True``
(its test cases use it), scores code j against factor k by their squared
correlation on the training points,

    A[j, k] = Cov(c_j, v_k)² / (Var c_j · Var v_k)     (0 when Var c_j ≤ 1e-12)

so an uninformative code scores 0 and a perfect one 1, with the same gap.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, class_labels, split_rows


def histogram_classifier_accuracy(train_code: np.ndarray, train_labels: np.ndarray,
                                  test_code: np.ndarray, test_labels: np.ndarray,
                                  num_bins: int) -> float:
  """Test accuracy of the one-code histogram classifier (module docstring).

  Args:
    train_code, test_code: [N_train], [N_test] values of one code.
    train_labels, test_labels: int class labels (>= 0) of the same points.
    num_bins: equal-width bins over the training range.
  """
  lo, hi = float(train_code.min()), float(train_code.max())
  edges = np.linspace(lo, hi, num_bins + 1)[1:-1]
  num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  counts = np.zeros((num_bins, num_classes), np.int64)
  np.add.at(counts, (np.digitize(train_code, edges), train_labels), 1)
  overall = np.bincount(train_labels, minlength=num_classes).argmax()
  prediction = np.where(counts.sum(1) > 0, counts.argmax(1), overall)
  return float(np.mean(prediction[np.digitize(test_code, edges)] == test_labels))


def sap_score(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
              num_train: int = 10_000, num_test: int = 5_000, exclude: tuple[int, ...] = ()
              ) -> dict[str, float | np.ndarray]:
  """The SAP score of ``codes`` [N, D] for int ``factors`` [N, K].

  Args:
    codes, factors: one row per dataset point (e.g. the posterior means).
    rng: draws the disjoint train and test points.
    num_train, num_test: as in disentanglement_lib (10,000 and 5,000);
      capped at half the points each.
    exclude: factors left out of the mean (their column is still computed).

  Returns:
    ``sap_score`` and the ``sap_matrix`` A [D, K].
  """
  codes, factors = check_codes_and_factors(codes, factors)
  train, test = split_rows(len(codes), num_train, num_test, rng)
  labels = class_labels(factors)
  d, k = codes.shape[1], factors.shape[1]
  matrix = np.zeros((d, k))
  for f in range(k):
    num_bins = 2 * len(np.unique(labels[:, f]))
    for j in range(d):
      matrix[j, f] = histogram_classifier_accuracy(
          codes[train, j], labels[train, f], codes[test, j], labels[test, f], num_bins)
  top = np.sort(matrix, axis=0)[::-1]
  gaps = top[0] - (top[1] if d > 1 else 0.0)
  used = [f for f in range(k) if f not in set(exclude)]
  return {"sap_score": float(gaps[used].mean()) if used else float("nan"), "sap_matrix": matrix}


def sap_score_continuous(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
                         num_train: int = 10_000, exclude: tuple[int, ...] = ()
                         ) -> dict[str, float | np.ndarray]:
  """The continuous-factor SAP score (module docstring) of ``codes`` [N, D]
  for ``factors`` [N, K] (their values, not class indices), on
  min(``num_train``, N) points drawn by ``rng`` (disentanglement_lib: 10,000).

  Returns:
    ``sap_score_continuous`` and the squared-correlation matrix
    ``sap_continuous_matrix`` A [D, K].
  """
  codes, factors = check_codes_and_factors(codes, factors)
  rows = rng.choice(len(codes), size=min(num_train, len(codes)), replace=False)
  c = codes[rows].astype(np.float64)
  v = factors[rows].astype(np.float64)
  c_centred, v_centred = c - c.mean(0), v - v.mean(0)
  cov = c_centred.T @ v_centred / max(len(rows) - 1, 1)               # [D, K]
  var_c = (c_centred ** 2).sum(0) / max(len(rows) - 1, 1)
  var_v = (v_centred ** 2).sum(0) / max(len(rows) - 1, 1)
  with np.errstate(divide="ignore", invalid="ignore"):
    matrix = cov ** 2 / (var_c[:, None] * var_v[None, :])
  matrix = np.where((var_c[:, None] > 1e-12) & (var_v[None, :] > 0), matrix, 0.0)
  top = np.sort(matrix, axis=0)[::-1]
  gaps = top[0] - (top[1] if codes.shape[1] > 1 else 0.0)
  used = [f for f in range(factors.shape[1]) if f not in set(exclude)]
  return {"sap_score_continuous": float(gaps[used].mean()) if used else float("nan"),
          "sap_continuous_matrix": matrix}
