"""FactorVAE score (Kim & Mnih, 2018), with disentanglement_lib's defaults.

1. Normalise each code dimension by its standard deviation over
   ``num_variance_estimate`` random points; dimensions whose std is below
   ``prune_threshold`` (collapsed latents) take no part.
2. A vote: pick a factor k uniformly, fix it to a random value, draw
   ``batch_size`` points with that value (the other factors random), and
   take the active dimension with the smallest variance of the normalised
   codes over the batch. The vote is (that dimension, k).
3. A majority-vote classifier maps each dimension to its most frequent
   factor over ``num_train`` votes; the score is its accuracy on
   ``num_eval`` fresh votes.

The codes of every dataset point are passed in (e.g. the posterior means),
so the votes index them instead of re-encoding images.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset


def _votes(codes: np.ndarray, dataset: GroundTruthDataset, scale: np.ndarray, active: np.ndarray,
           num_votes: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
  """int [num_votes, 2]: (dimension with least variance, fixed factor)."""
  out = np.empty((num_votes, 2), np.int64)
  for i in range(num_votes):
    k = rng.integers(dataset.num_factors)
    factors = dataset.sample_factors(batch_size, rng)
    factors[:, k] = factors[0, k]
    normalised = codes[dataset.index_of(factors)] / scale
    variances = np.where(active, normalised.var(axis=0, ddof=1), np.inf)
    out[i] = (np.argmin(variances), k)
  return out


def factorvae_score(codes: np.ndarray, dataset: GroundTruthDataset, *, rng: np.random.Generator,
                    batch_size: int = 64, num_train: int = 10_000, num_eval: int = 5_000,
                    num_variance_estimate: int = 10_000, prune_threshold: float = 0.05
                    ) -> dict[str, float | int]:
  """The FactorVAE score (see the module docstring).

  Args:
    codes: [N, D] a representation of every dataset row.
    dataset: the ground-truth dataset the rows belong to.
    rng: all randomness.
    batch_size, num_train, num_eval, num_variance_estimate: as in
      disentanglement_lib (64, 10,000, 5,000, 10,000).
    prune_threshold: minimum std of an active dimension.

  Returns:
    ``factorvae_score`` (eval accuracy), ``factorvae_train_accuracy`` and
    ``num_active_dims``.
  """
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2 or len(codes) != len(dataset):
    raise ValueError(f"codes must be [N={len(dataset)}, D], got {codes.shape}.")
  sample = rng.choice(len(codes), min(num_variance_estimate, len(codes)), replace=False)
  scale = codes[sample].std(axis=0, ddof=1)
  active = scale >= prune_threshold
  if not active.any():
    return {"factorvae_score": 0.0, "factorvae_train_accuracy": 0.0, "num_active_dims": 0}
  scale = np.where(active, scale, 1.0)
  d, k = codes.shape[1], dataset.num_factors
  train = _votes(codes, dataset, scale, active, num_train, batch_size, rng)
  counts = np.zeros((d, k), np.int64)
  np.add.at(counts, (train[:, 0], train[:, 1]), 1)
  classifier = counts.argmax(axis=1)                      # dimension -> factor
  evals = _votes(codes, dataset, scale, active, num_eval, batch_size, rng)
  return {"factorvae_score": float(np.mean(classifier[evals[:, 0]] == evals[:, 1])),
          "factorvae_train_accuracy": float(counts.max(axis=1).sum() / num_train),
          "num_active_dims": int(active.sum())}
