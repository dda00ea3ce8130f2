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
