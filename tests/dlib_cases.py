"""disentanglement_lib's test data, re-created: ``IdentityObservationsData``
(10 factors of 10 values each, the observation is the factor vector) and
the representations its metric tests use."""

import numpy as np

NUM_FACTORS, FACTOR_SIZE = 10, 10


def identity_factors(num_points: int, rng: np.random.Generator) -> np.ndarray:
  """int [N, 10]: factors drawn uniformly, as dlib's sample_factors."""
  return rng.integers(0, FACTOR_SIZE, size=(num_points, NUM_FACTORS))


def representations(factors: np.ndarray) -> dict[str, np.ndarray]:
  """The codes dlib's tests feed a metric: the identity, zeros, the identity
  twice (duplicated), and the identity with its columns permuted."""
  x = factors.astype(np.float64)
  return {"identity": x, "zeros": np.zeros_like(x), "duplicated": np.hstack([x, x]),
          "permuted": x[:, np.random.default_rng(0).permutation(x.shape[1])]}
