"""Downstream tasks and fairness on the codes of a full factor grid, as
disentanglement_lib's ``downstream_task``, ``strong_downstream_task`` and
``fairness`` compute them.

Each predicts every factor k from the whole code with a classifier
(``predictor``): ``"logistic"``, our softmax regression (``metrics.linear``,
C = 1; disentanglement_lib uses scikit-learn's LogisticRegressionCV), or
``"boosted_trees"``, scikit-learn's GradientBoostingClassifier with its
settings written out (100 trees of depth 3, learning rate 0.1), as
disentanglement_lib's ``gradient_boosting_classifier``.

* Downstream: for each training size n, train on n points, test on
  ``num_test``; the mean (and min) accuracy over factors.
* Strong downstream (generalisation under a covariate shift): the training
  points all have one other factor j fixed at a value a, the test points any
  other value of j; ``strong_generalization_gap`` = 1 − strong / plain test
  accuracy.
* Fairness: a classifier of factor i (trained on ``num_train`` points) is
  run on ``num_test_points_per_class`` points with the sensitive factor j
  set to each of its values in turn (an intervention: the same points, only
  j changed); with p_c the distribution of predictions when j = c and p̄
  their pooled distribution,

      TV_c = ½ Σ_y |p_c(y) − p̄(y)|,   mean_fairness_ij = Σ_c w_c TV_c,
      max_fairness_ij = max_c TV_c   (w_c: the share of points with j = c)

  and the paper's score (Locatello et al. 2019, "On the Fairness of
  Disentangled Representations") is the mean over i ≠ j.

Points are drawn with replacement, as disentanglement_lib samples factors;
an intervened point is the grid's point with the new factor values, so the
dataset must hold every combination once (``GridIndex``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, class_labels
from betatc_jax.metrics.linear import fit_softmax_regression

PREDICTORS = ("logistic", "boosted_trees")


class GridIndex:
  """The row of each combination of factor classes of a full grid."""

  def __init__(self, factors: np.ndarray):
    self.labels = class_labels(np.asarray(factors))
    self.sizes = tuple(int(m) + 1 for m in self.labels.max(axis=0))
    flat = np.ravel_multi_index(tuple(self.labels.T), self.sizes)
    if len(flat) != int(np.prod(self.sizes)) or len(np.unique(flat)) != len(flat):
      raise ValueError(f"interventions need every combination of the factor classes "
                       f"{self.sizes} exactly once; the dataset has {len(flat)} points.")
    self._rows = np.empty(len(flat), np.int64)
    self._rows[flat] = np.arange(len(flat))

  def rows(self, labels: np.ndarray) -> np.ndarray:
    """Rows [M] of the points with class labels ``labels`` [M, K]."""
    return self._rows[np.ravel_multi_index(tuple(np.asarray(labels).T), self.sizes)]


class ConstantClassifier(NamedTuple):
  """What a training set of one class fits: that class, for every point."""
  label: int

  def predict(self, x: np.ndarray) -> np.ndarray:
    return np.full(len(x), self.label)


def _fit(predictor: str, x: np.ndarray, y: np.ndarray, num_classes: int,
         rng: np.random.Generator) -> Any:
  """A fitted classifier with ``predict``; one class in ``y`` predicts it."""
  if len(np.unique(y)) == 1:
    return ConstantClassifier(int(y[0]))
  if predictor == "logistic":
    return fit_softmax_regression(x, y, num_classes)
  if predictor == "boosted_trees":
    from sklearn.ensemble import GradientBoostingClassifier
    model = GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, max_depth=3,
                                       subsample=1.0, random_state=int(rng.integers(2**31)))
    return model.fit(x, y)
  raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}.")


def _accuracies(predictor: str, codes: np.ndarray, labels: np.ndarray, train: np.ndarray,
                test: np.ndarray, rng: np.random.Generator, factors: Sequence[int]
                ) -> tuple[list[float], list[float]]:
  train_acc, test_acc = [], []
  for k in factors:
    model = _fit(predictor, codes[train], labels[train, k], int(labels[:, k].max()) + 1, rng)
    train_acc.append(float(np.mean(model.predict(codes[train]) == labels[train, k])))
    test_acc.append(float(np.mean(model.predict(codes[test]) == labels[test, k])))
  return train_acc, test_acc


def downstream_task(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
                    train_sizes: Sequence[int] = (10, 100, 1000, 10_000), num_test: int = 5_000,
                    predictor: str = "logistic") -> dict[str, float]:
  """Accuracy of predicting each factor from ``codes`` [N, D] (module
  docstring), disentanglement_lib's sizes by default.

  Returns:
    ``"<n>:mean_train_accuracy"``, ``"<n>:mean_test_accuracy"``,
    ``"<n>:min_train_accuracy"``, ``"<n>:min_test_accuracy"`` and
    ``"<n>:test_accuracy_factor_<k>"`` per training size n.
  """
  codes, factors = check_codes_and_factors(codes, factors)
  labels, scores = class_labels(factors), {}
  for n in train_sizes:
    train = rng.integers(len(codes), size=n)
    test = rng.integers(len(codes), size=num_test)
    train_acc, test_acc = _accuracies(predictor, codes, labels, train, test, rng,
                                      range(labels.shape[1]))
    scores.update({f"{n}:mean_train_accuracy": float(np.mean(train_acc)),
                   f"{n}:mean_test_accuracy": float(np.mean(test_acc)),
                   f"{n}:min_train_accuracy": float(np.min(train_acc)),
                   f"{n}:min_test_accuracy": float(np.min(test_acc)),
                   **{f"{n}:test_accuracy_factor_{k}": a for k, a in enumerate(test_acc)}})
  return scores


def intervene(train_labels: np.ndarray, test_labels: np.ndarray, target: int,
              sizes: Sequence[int], rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, int, int]:
  """Fixes a random other factor j at a random value a in every training
  point, and sets it to random values other than a in every test point.

  Returns:
    (train labels, test labels, j, a); the inputs are not changed.
  """
  others = [j for j in range(len(sizes)) if j != target and sizes[j] > 1]
  if not others:
    raise ValueError("an intervention needs another factor with two values or more.")
  j = int(rng.choice(others))
  a = int(rng.integers(sizes[j]))
  train, test = train_labels.copy(), test_labels.copy()
  train[:, j] = a
  rest = np.array([v for v in range(sizes[j]) if v != a])
  test[:, j] = rng.choice(rest, size=len(test))
  return train, test, j, a


def strong_downstream_task(codes: np.ndarray, factors: np.ndarray, *,
                           rng: np.random.Generator, train_sizes: Sequence[int] = (10_000,),
                           num_test: int = 5_000, num_experiments: int = 10,
                           predictor: str = "logistic") -> dict[str, float]:
  """Downstream accuracy with and without a covariate shift (module
  docstring) on a full grid's ``codes`` [N, D].

  Returns:
    per training size n: ``"<n>:mean_test_accuracy"``,
    ``"<n>:mean_strong_test_accuracy"``, ``"<n>:mean_strong_train_accuracy"``
    and ``"<n>:strong_generalization_gap"``.
  """
  codes, factors = check_codes_and_factors(codes, factors)
  grid = GridIndex(factors)
  labels, scores = grid.labels, {}
  for n in train_sizes:
    train_labels = labels[rng.integers(len(codes), size=n)]
    test_labels = labels[rng.integers(len(codes), size=num_test)]
    plain = _accuracies(predictor, codes, labels, grid.rows(train_labels),
                        grid.rows(test_labels), rng, range(labels.shape[1]))[1]
    strong_train, strong_test = [], []
    for k in range(labels.shape[1]):
      for _ in range(num_experiments):
        tr, te, _, _ = intervene(train_labels, test_labels, k, grid.sizes, rng)
        a, b = _accuracies(predictor, codes, labels, grid.rows(tr), grid.rows(te), rng, [k])
        strong_train += a
        strong_test += b
    scores.update({f"{n}:mean_test_accuracy": float(np.mean(plain)),
                   f"{n}:mean_strong_train_accuracy": float(np.mean(strong_train)),
                   f"{n}:mean_strong_test_accuracy": float(np.mean(strong_test)),
                   f"{n}:strong_generalization_gap":
                       float(1.0 - np.mean(strong_test) / np.mean(plain))})
  return scores


def inter_group_fairness(counts: np.ndarray) -> tuple[float, float]:
  """(mean, max) total variation between each sensitive class's
  distribution of predictions and the pooled one (module docstring);
  ``counts`` [predicted classes, sensitive classes]."""
  counts = np.asarray(counts, np.float64)
  per_class = counts.sum(axis=0)
  pooled = counts.sum(axis=1) / counts.sum()
  tv = 0.5 * np.abs(counts / per_class[None, :] - pooled[:, None]).sum(axis=0)
  return float(np.sum(tv * per_class) / per_class.sum()), float(tv.max())


def fairness_scores(matrix: np.ndarray, prefix: str) -> dict[str, float]:
  """disentanglement_lib's summaries of a fairness ``matrix`` [K, K] (row:
  the predicted factor, column: the sensitive one; the diagonal unused):
  every entry, the mean and max over sensitive factors per predicted one
  and over predicted ones per sensitive one, and the four combinations each
  way, keyed as ``"<prefix>:pred<i>:sens<j>"``, ``"<prefix>:mean_pred:mean_sens"``, ...."""
  m = np.asarray(matrix, np.float64)
  k = m.shape[0]
  off = ~np.eye(k, dtype=bool)
  out = {f"{prefix}:pred{i}:sens{j}": float(m[i, j]) for i in range(k) for j in range(k) if i != j}
  rows = [m[i, off[i]] for i in range(k)]
  cols = [m[off[:, j], j] for j in range(k)]
  for i, r in enumerate(rows):
    out.update({f"{prefix}:pred{i}:mean_sens": float(r.mean()),
                f"{prefix}:pred{i}:max_sens": float(r.max())})
  for j, c in enumerate(cols):
    out.update({f"{prefix}:sens{j}:mean_pred": float(c.mean()),
                f"{prefix}:sens{j}:max_pred": float(c.max())})
  for first, second, groups in (("sens", "pred", cols), ("pred", "sens", rows)):
    means = np.array([g.mean() for g in groups])
    maxs = np.array([g.max() for g in groups])
    out.update({f"{prefix}:mean_{first}:mean_{second}": float(means.mean()),
                f"{prefix}:mean_{first}:max_{second}": float(maxs.mean()),
                f"{prefix}:max_{first}:mean_{second}": float(means.max()),
                f"{prefix}:max_{first}:max_{second}": float(maxs.max())})
  return out


def fairness(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
             num_train: int = 10_000, num_test_points_per_class: int = 100,
             predictor: str = "logistic") -> dict[str, Any]:
  """Fairness of each factor's classifier towards every other factor
  (module docstring) on a full grid's ``codes`` [N, D], disentanglement_lib's
  sizes by default.

  Returns:
    ``fairness_scores`` of the mean and max matrices (prefixes
    ``mean_fairness`` and ``max_fairness``) and the matrices themselves
    (``mean_fairness_matrix``, ``max_fairness_matrix``).
  """
  codes, factors = check_codes_and_factors(codes, factors)
  grid = GridIndex(factors)
  labels, k = grid.labels, factors.shape[1]
  mean_m, max_m = np.zeros((k, k)), np.zeros((k, k))
  for i in range(k):
    train = rng.integers(len(codes), size=num_train)
    model = _fit(predictor, codes[train], labels[train, i], grid.sizes[i], rng)
    for j in range(k):
      if i == j:
        continue
      base = labels[rng.integers(len(codes), size=num_test_points_per_class)]
      counts = np.zeros((grid.sizes[i], grid.sizes[j]), np.int64)
      for c in range(grid.sizes[j]):
        intervened = base.copy()
        intervened[:, j] = c
        predictions = model.predict(codes[grid.rows(intervened)])
        counts[:, c] = np.bincount(predictions, minlength=grid.sizes[i])
      mean_m[i, j], max_m[i, j] = inter_group_fairness(counts)
  return {**fairness_scores(mean_m, "mean_fairness"), **fairness_scores(max_m, "max_fairness"),
          "mean_fairness_matrix": mean_m, "max_fairness_matrix": max_m}
