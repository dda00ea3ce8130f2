"""β-VAE score (Higgins et al., 2017), with disentanglement_lib's defaults.

One training point: pick a factor k uniformly, draw ``batch_size`` pairs of
dataset points that share factor k's value (the other factors random), and
take the mean over the pairs of |c(x₁) − c(x₂)| [D] (c: the codes). The
label is k. A linear classifier (multinomial logistic regression,
``metrics.linear``, C = 1) is fitted on ``num_train`` such points; the score
is its accuracy on ``num_eval`` fresh ones. The code that holds factor k
alone differs least in those pairs, so a disentangled representation makes
the label linearly readable. Chance is 1/K.

As ``factorvae_score``, it indexes the codes of every dataset point
instead of re-encoding images.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.metrics.linear import fit_softmax_regression


def _points(codes: np.ndarray, dataset: GroundTruthDataset, num: int, batch_size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(features [num, D], labels [num]) of the module docstring."""
  labels = rng.integers(dataset.num_factors, size=num)
  features = np.empty((num, codes.shape[1]))
  for i, k in enumerate(labels):
    first = dataset.sample_factors(batch_size, rng)
    second = dataset.sample_factors(batch_size, rng)
    second[:, k] = first[:, k]
    features[i] = np.abs(codes[dataset.index_of(first)] - codes[dataset.index_of(second)]).mean(0)
  return features, labels


def beta_vae_score(codes: np.ndarray, dataset: GroundTruthDataset, *, rng: np.random.Generator,
                   batch_size: int = 64, num_train: int = 10_000, num_eval: int = 5_000
                   ) -> dict[str, float]:
  """The β-VAE score (module docstring).

  Args:
    codes: [N, D] a representation of every dataset row.
    dataset: the ground-truth dataset the rows belong to.
    rng: all randomness.
    batch_size, num_train, num_eval: disentanglement_lib's 64, 10,000, 5,000.

  Returns:
    ``beta_vae_score`` (eval accuracy) and ``beta_vae_train_accuracy``.
  """
  codes = np.asarray(codes, np.float64)
  if codes.ndim != 2 or len(codes) != len(dataset):
    raise ValueError(f"codes must be [N={len(dataset)}, D], got {codes.shape}.")
  if min(batch_size, num_train, num_eval) < 1:
    raise ValueError(f"batch_size, num_train, num_eval must be >= 1, got "
                     f"{batch_size}, {num_train}, {num_eval}.")
  if not np.all(np.isfinite(codes)):
    raise ValueError("codes hold NaN or inf.")
  x_train, y_train = _points(codes, dataset, num_train, batch_size, rng)
  x_eval, y_eval = _points(codes, dataset, num_eval, batch_size, rng)
  model = fit_softmax_regression(x_train, y_train, dataset.num_factors)
  return {"beta_vae_score": float(np.mean(model.predict(x_eval) == y_eval)),
          "beta_vae_train_accuracy": float(np.mean(model.predict(x_train) == y_train))}
