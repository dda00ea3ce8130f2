"""The linear classifier and the AUC that the β-VAE score and explicitness use.

Multinomial logistic regression, written out here instead of taken from
scikit-learn, whose ``LogisticRegression`` defaults (solver, multi-class
scheme, penalty argument) changed between versions: the metrics must give
the same number on every install. Its objective, minimized with SciPy's
L-BFGS-B at fixed settings from zero weights:

    Σ_i −log softmax(x_i W + b)[y_i]  +  ||W||² / (2C)       (b unpenalized)

which is scikit-learn's l2 logistic regression with the same C.

The fit runs its matrix products on one BLAS thread: for these small
products (10,000 × D by D × C) OpenBLAS's threads cost more than they save
(the five fits of explicitness: 20 s on 2 cores, 2.8 s on one thread), and
one thread does the same arithmetic on every machine whatever its core
count, where a threaded product's summation order follows the thread count.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SoftmaxRegression(NamedTuple):
  """weights [F, C], bias [C] of a fitted classifier over C classes."""
  weights: np.ndarray
  bias: np.ndarray

  def log_proba(self, x: np.ndarray) -> np.ndarray:
    """[N, C] log-probabilities of x [N, F]."""
    logits = np.asarray(x, np.float64) @ self.weights + self.bias
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

  def predict(self, x: np.ndarray) -> np.ndarray:
    return self.log_proba(x).argmax(axis=1)


def fit_softmax_regression(x: np.ndarray, y: np.ndarray, num_classes: int, *, c: float = 1.0,
                           max_iter: int = 500, tol: float = 1e-6) -> SoftmaxRegression:
  """Fits the regularized multinomial logistic regression of the module docstring.

  Args:
    x: [N, F] features; y: int [N] labels in [0, num_classes).
    num_classes: C (classes absent from y get low scores, not an error).
    c: inverse regularization strength (scikit-learn's C).
    max_iter, tol: L-BFGS-B's iteration limit and projected-gradient tolerance.

  Returns:
    The fitted ``SoftmaxRegression``.
  """
  from scipy.optimize import minimize
  from threadpoolctl import threadpool_limits

  x = np.asarray(x, np.float64)
  y = np.asarray(y)
  if x.ndim != 2 or y.shape != (len(x),) or len(x) == 0:
    raise ValueError(f"x [N, F] and y [N] needed, got {x.shape}, {y.shape}.")
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}].")
  if c <= 0:
    raise ValueError(f"c must be > 0, got {c}.")
  n, f = x.shape
  onehot = np.zeros((n, num_classes))
  onehot[np.arange(n), y] = 1.0

  def objective(theta):
    model = SoftmaxRegression(theta[:f * num_classes].reshape(f, num_classes),
                              theta[f * num_classes:])
    log_p = model.log_proba(x)
    residual = np.exp(log_p) - onehot                            # d loss / d logits
    value = -(log_p * onehot).sum() + 0.5 / c * np.sum(model.weights ** 2)
    grad_w = x.T @ residual + model.weights / c
    return value, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

  with threadpool_limits(limits=1, user_api="blas"):
    result = minimize(objective, np.zeros(f * num_classes + num_classes), jac=True,
                      method="L-BFGS-B", options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0,
                                                  "maxcor": 10})
  theta = result.x
  return SoftmaxRegression(theta[:f * num_classes].reshape(f, num_classes),
                           theta[f * num_classes:])


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative),
  ties counting 1/2 (the Mann–Whitney statistic). scores [N] float, positive
  [N] bool; NaN when either class is empty."""
  scores = np.asarray(scores, np.float64)
  positive = np.asarray(positive, bool)
  num_pos, num_neg = int(positive.sum()), int((~positive).sum())
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  from scipy.stats import rankdata
  ranks = rankdata(scores, method="average")                    # 1-based, ties averaged
  return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))
