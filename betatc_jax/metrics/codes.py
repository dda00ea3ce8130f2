"""What the code-based metrics share: the input check and the discretization."""

from __future__ import annotations

import numpy as np


def check_codes_and_factors(codes: np.ndarray, factors: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
  """``codes`` [N, D] and int ``factors`` [N, K] as arrays, one row per point.

  Raises:
    ValueError: wrong ranks, different lengths, no points or non-finite codes.
  """
  codes, factors = np.asarray(codes), np.asarray(factors)
  if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
    raise ValueError(f"codes [N, D] and factors [N, K] needed, got {codes.shape}, {factors.shape}.")
  if len(codes) == 0:
    raise ValueError("codes and factors are empty.")
  if not np.all(np.isfinite(codes)):
    raise ValueError("codes hold NaN or inf.")
  return codes, factors


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
  """int [N, D]: each code dimension [N] of ``codes`` [N, D] cut into
  ``num_bins`` equal-width bins over its range (disentanglement_lib's
  histogram discretization); bin indices 0 .. num_bins − 1."""
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
  return np.stack([np.digitize(c, np.histogram(c, num_bins)[1][1:-1]) for c in codes.T], axis=1)


def split_rows(n: int, num_train: int, num_test: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
  """Disjoint random train and test rows of ``n`` points: ``num_train``
  capped at n // 2, ``num_test`` at the rest (one ``rng.permutation``).

  Raises:
    ValueError: fewer than 2 points, or a size < 1.
  """
  if num_train < 1 or num_test < 1:
    raise ValueError(f"num_train and num_test must be >= 1, got {num_train}, {num_test}.")
  if n < 2:
    raise ValueError(f"A train/test split needs at least 2 points, got {n}.")
  num_train = min(num_train, n // 2)
  num_test = min(num_test, n - num_train)
  rows = rng.permutation(n)
  return rows[:num_train], rows[num_train:num_train + num_test]


def split_by_fraction(n: int, train_fraction: float, rng: np.random.Generator | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Train and test rows of ``n`` points by fraction, as disentanglement_lib's
  ``split_train_test``: the first ceil(n · ``train_fraction``) rows train,
  the rest test (100 points at 0.9: 90 + 10). With ``rng``, the rows are
  permuted first (for points not already drawn at random). Unlike
  ``split_rows``, nothing is capped at half.

  Raises:
    ValueError: a fraction outside (0, 1], or no points.
  """
  if not 0 < train_fraction <= 1:
    raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}.")
  if n < 1:
    raise ValueError(f"A train/test split needs points, got {n}.")
  rows = rng.permutation(n) if rng is not None else np.arange(n)
  num_train = int(np.ceil(n * train_fraction))
  return rows[:num_train], rows[num_train:]


def class_labels(factors: np.ndarray) -> np.ndarray:
  """int [N, K]: each factor column [N] of ``factors`` as classes 0 .. |V_k| − 1."""
  return np.stack([np.unique(f, return_inverse=True)[1] for f in factors.T], axis=1)
