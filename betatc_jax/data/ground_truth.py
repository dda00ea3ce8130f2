"""A dataset of images with discrete ground-truth factors of variation.

The interface follows disentanglement_lib's ``GroundTruthData``: factor
sizes, sampling of factors and of the images that show them, with all
randomness passed in as a ``np.random.Generator``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class GroundTruthDataset:
  """Images and their factor classes.

  Attributes:
    images: uint8 [N, H, W, C] with values in [0, 255] (a numpy array or a
      memmap).
    factors: int32 [N, K], the class index of each factor of each image.
    factor_names: K names.
    factor_sizes: K class counts; factors[:, k] < factor_sizes[k].
    factor_values: optionally K arrays, the value of each class.
    name: a short description.
  """
  images: np.ndarray
  factors: np.ndarray
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  factor_values: tuple[np.ndarray, ...] | None = None
  name: str = ""

  def __post_init__(self):
    images, factors = self.images, self.factors
    if images.ndim != 4 or images.dtype != np.uint8:
      raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}.")
    if factors.ndim != 2 or factors.shape[0] != images.shape[0]:
      raise ValueError(
          f"factors must be [N, K] with N = {images.shape[0]}, got {factors.shape}.")
    k = factors.shape[1]
    if len(self.factor_names) != k or len(self.factor_sizes) != k:
      raise ValueError(f"{k} factor columns but {len(self.factor_names)} names and "
                       f"{len(self.factor_sizes)} sizes.")
    if factors.size and (factors.min() < 0 or np.any(factors.max(0) >= np.asarray(self.factor_sizes))):
      raise ValueError(f"factor classes out of range for factor_sizes {self.factor_sizes}.")

  def __len__(self) -> int:
    return self.images.shape[0]

  @property
  def num_factors(self) -> int:
    return len(self.factor_sizes)

  @property
  def observation_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  @property
  def _row_of_grid_cell(self) -> np.ndarray:
    """Row index of each cell of the factor grid (−1 where no image has it)."""
    cached = self.__dict__.get("_row_cache")
    if cached is None:
      cells = np.ravel_multi_index(tuple(self.factors.T.astype(np.int64)), self.factor_sizes)
      cached = np.full(math.prod(self.factor_sizes), -1, np.int64)
      cached[cells[::-1]] = np.arange(len(cells))[::-1]  # the first row wins
      object.__setattr__(self, "_row_cache", cached)
    return cached

  def index_of(self, factors: np.ndarray) -> np.ndarray:
    """Row indices of images with the given factor classes.

    Args:
      factors: int [M, K].

    Returns:
      int64 [M].

    Raises:
      ValueError: if a combination is out of range or has no image.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != self.num_factors:
      raise ValueError(f"factors must be [M, {self.num_factors}], got {factors.shape}.")
    if np.any(factors < 0) or np.any(factors >= np.asarray(self.factor_sizes)):
      raise ValueError(f"factor classes out of range for factor_sizes {self.factor_sizes}.")
    rows = self._row_of_grid_cell[np.ravel_multi_index(tuple(factors.T), self.factor_sizes)]
    if np.any(rows < 0):
      raise ValueError(f"No image in {self.name or 'the dataset'} has factors "
                       f"{factors[rows < 0][0].tolist()}.")
    return rows

  def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random factor classes: int32 [num, K]."""
    return np.stack([rng.integers(0, s, num) for s in self.factor_sizes], axis=1).astype(np.int32)

  def images_for_factors(self, factors: np.ndarray) -> np.ndarray:
    """uint8 [M, H, W, C]: the image of each factor combination."""
    return gather_rows(self.images, self.index_of(factors))

  def sample(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random factors and their images: (int32 [num, K], uint8 [num, H, W, C])."""
    factors = self.sample_factors(num, rng)
    return factors, self.images_for_factors(factors)


def gather_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """array[rows], reading in ascending row order (fast on a memmap)."""
  order = np.argsort(rows, kind="stable")
  out = np.empty((len(rows),) + array.shape[1:], array.dtype)
  out[order] = array[rows[order]]
  return out
