"""DCI-ES's two new properties (Eastwood et al., ICLR 2023): explicitness
from loss-capacity curves, and size.

Explicitness of factor k. Probes of increasing capacity κ_1 < … < κ_n are
fitted to predict the factor from the codes; ℓ_i is probe i's test loss,
carried down so that the curve never rises (ℓ_i ← min_{i' ≤ i} ℓ_i': a
larger probe can do what a smaller one did), ℓ* = ℓ_n its lowest value and
ℓ^b the loss of the best constant predictor (the baseline). Then

    AULCC_k = ∫_{κ_1}^{κ_n} (ℓ(κ) − ℓ*) dκ    (trapezoids between the probes)
    Z_k     = ½ (κ_n − κ_1) (ℓ^b − ℓ*)         (the triangle: ℓ^b at κ_1 to ℓ* at κ_n)
    E_k     = 1 − AULCC_k / Z_k,   explicitness = mean_k E_k

E_k = 1 when the smallest probe already reaches the lowest loss, 0 when the
loss falls linearly from the baseline, and down to −1 when it stays at the
baseline until the largest probe. A factor that no probe predicts better
than the baseline (ℓ* ≥ ℓ^b) gets E_k = 0. E does not change when the
capacity axis is shifted or scaled.

Size: S = K / D, the number of factors over the number of code dimensions
(1 for a code with one dimension per factor, smaller for a larger code).

Pinned probes: random forests of ``num_trees`` trees (scikit-learn, every
split choosing among all codes, as ``metrics.dci``) classifying the factor's
class, with capacity κ = the trees' maximum depth (the log2 of the most
leaves a tree can have); loss = test misclassification rate, baseline = the
best constant answer's test error (1 − the test split's largest class
frequency), which no probe on constant codes can beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from betatc_jax.metrics.codes import check_codes_and_factors, split_rows

PROBE_DEPTHS = (1, 2, 3, 4, 6, 8, 12, 16)


def explicitness_from_curve(capacities: Sequence[float], losses: Sequence[float],
                            baseline_loss: float) -> float:
  """E of one loss-capacity curve (module docstring).

  Args:
    capacities: [n] strictly increasing probe capacities, n >= 2.
    losses: [n] the probes' test losses.
    baseline_loss: ℓ^b, the best constant predictor's loss.

  Returns:
    E in [−1, 1] (0 when no probe beats the baseline).

  Raises:
    ValueError: fewer than 2 probes, mismatched lengths, capacities not
      strictly increasing, or non-finite values.
  """
  kappa = np.asarray(capacities, np.float64)
  loss = np.asarray(losses, np.float64)
  if kappa.ndim != 1 or loss.shape != kappa.shape or len(kappa) < 2:
    raise ValueError(f"capacities and losses must be [n], n >= 2, got {kappa.shape}, {loss.shape}.")
  if not (np.all(np.isfinite(kappa)) and np.all(np.isfinite(loss))
          and np.isfinite(baseline_loss)):
    raise ValueError("capacities, losses and baseline_loss must be finite.")
  if np.any(np.diff(kappa) <= 0):
    raise ValueError(f"capacities must be strictly increasing, got {kappa.tolist()}.")
  curve = np.minimum.accumulate(loss)
  lowest = curve[-1]
  if lowest >= baseline_loss:
    return 0.0
  gap = curve - lowest
  area = float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(kappa)))
  normaliser = 0.5 * (kappa[-1] - kappa[0]) * (baseline_loss - lowest)
  return 1.0 - area / normaliser


def size(num_factors: int, code_dims: int) -> float:
  """S = K / D for K factors and a D-dimensional code."""
  if num_factors < 1 or code_dims < 1:
    raise ValueError(f"size needs K >= 1 factors and D >= 1 dims, got {num_factors}, {code_dims}.")
  return num_factors / code_dims


def dci_es(codes: np.ndarray, factors: np.ndarray, *, rng: np.random.Generator,
           num_train: int = 10_000, num_test: int = 5_000, num_trees: int = 10,
           depths: Sequence[int] = PROBE_DEPTHS) -> dict[str, float | np.ndarray]:
  """Explicitness and size of ``codes`` [N, D] for int ``factors`` [N, K].

  Args:
    codes, factors: one row per dataset point.
    rng: draws the train and test points and seeds the forests.
    num_train, num_test: points (disjoint, ``codes.split_rows``) to fit and score.
    num_trees: trees per probe forest.
    depths: the probes' maximum depths, the capacity axis (increasing).

  Returns:
    ``explicitness`` (mean over the factors), ``explicitness_per_factor``
    [K], ``size``, ``loss_curves`` [K, n] (test error per depth, before it is
    carried down) and ``baseline_losses`` [K].
  """
  from sklearn.ensemble import RandomForestClassifier

  codes, factors = check_codes_and_factors(codes, factors)
  train, test = split_rows(len(codes), num_train, num_test, rng)
  k_count = factors.shape[1]
  curves = np.zeros((k_count, len(depths)))
  baselines = np.zeros(k_count)
  for k in range(k_count):
    baselines[k] = 1.0 - np.unique(factors[test, k], return_counts=True)[1].max() / len(test)
    for i, depth in enumerate(depths):
      forest = RandomForestClassifier(n_estimators=num_trees, max_depth=int(depth),
                                      max_features=None, n_jobs=-1,
                                      random_state=int(rng.integers(2**31)))
      forest.fit(codes[train], factors[train, k])
      forest.n_jobs = 1  # threaded predict sums tree outputs in any order: ties would flip
      curves[k, i] = 1.0 - forest.score(codes[test], factors[test, k])
  per_factor = np.array([explicitness_from_curve(depths, curves[k], baselines[k])
                         for k in range(k_count)])
  return {"explicitness": float(per_factor.mean()), "explicitness_per_factor": per_factor,
          "size": size(k_count, codes.shape[1]), "loss_curves": curves,
          "baseline_losses": baselines}
