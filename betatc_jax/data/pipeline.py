"""Deterministic, resumable, sharded batches of uint8 images.

The batch at step k is a pure function of (seed, k): the examples of the
global stream t = k·B … k·B + B − 1 are ``perm(seed, t // N)[t % N]``, one
fresh permutation per epoch. A run resumed at step k therefore sees exactly
the batches an uninterrupted run would. Batches stay uint8 on the way to the
device (4× less to copy); the trainer converts them to float there.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset, gather_rows


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, dataset_size: int) -> np.ndarray:
  """The order of epoch ``epoch``: int64 [N], a pure function of its arguments."""
  return np.random.default_rng([seed, epoch]).permutation(dataset_size)


def batch_indices(seed: int, step: int, batch_size: int, dataset_size: int) -> np.ndarray:
  """Dataset rows of the global batch at ``step``: int64 [B]."""
  if batch_size > dataset_size:
    raise ValueError(f"batch_size ({batch_size}) is larger than the dataset ({dataset_size}).")
  stream = step * batch_size + np.arange(batch_size, dtype=np.int64)
  epochs, positions = np.divmod(stream, dataset_size)
  rows = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    mask = epochs == epoch
    rows[mask] = epoch_permutation(seed, int(epoch), dataset_size)[positions[mask]]
  return rows


def local_batch_slice(sharding: jax.sharding.Sharding, global_shape: tuple[int, ...]) -> slice:
  """The rows of the global batch that this process's devices hold."""
  starts, stops = [], []
  for index in sharding.addressable_devices_indices_map(global_shape).values():
    rows = index[0]
    starts.append(rows.start or 0)
    stops.append(global_shape[0] if rows.stop is None else rows.stop)
  return slice(min(starts), max(stops))


def global_batch(dataset: GroundTruthDataset, rows: np.ndarray,
                 sharding: jax.sharding.Sharding) -> jax.Array:
  """The uint8 batch of ``rows`` [B] as a global array [B, H, W, C] laid out
  by ``sharding``: each process gathers only the rows its devices hold.

  Raises:
    ValueError: B not divisible by the devices of ``sharding``.
  """
  shape = (len(rows),) + dataset.observation_shape
  devices = len(sharding.device_set)
  if len(rows) % devices:
    raise ValueError(f"batch_size {len(rows)} is not divisible by the number of devices "
                     f"({devices}).")
  local = gather_rows(dataset.images, np.asarray(rows)[local_batch_slice(sharding, shape)])
  return jax.make_array_from_process_local_data(sharding, local, shape)
