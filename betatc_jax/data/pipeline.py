"""Deterministic, resumable, sharded batches of uint8 images.

The batch at step k is a pure function of (seed, k): the examples of the
global stream t = k·B … k·B + B − 1 are ``perm(seed, t // N)[t % N]``, one
fresh permutation per epoch. A run resumed at step k therefore sees exactly
the batches an uninterrupted run would. Batches stay uint8 on the way to the
device (4× less to copy); the trainer converts them to float there.
"""

from __future__ import annotations

import concurrent.futures
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


class Batches:
  """Iterates (step, batch) from ``start_step`` on, one batch prefetched.

  ``batch`` is a global uint8 ``jax.Array`` [B, H, W, C] with the given
  sharding; each process reads only the rows its devices hold.
  """

  def __init__(self, dataset: GroundTruthDataset, batch_size: int, seed: int,
               start_step: int = 0, sharding: jax.sharding.Sharding | None = None):
    if batch_size > len(dataset):
      raise ValueError(f"batch_size ({batch_size}) is larger than the dataset "
                       f"{dataset.name!r} ({len(dataset)} images).")
    if sharding is not None:
      num_devices = len(sharding.device_set)
      if batch_size % num_devices:
        raise ValueError(f"batch_size {batch_size} is not divisible by the number of "
                         f"devices ({num_devices}).")
    self._dataset, self._batch_size, self._seed = dataset, batch_size, seed
    self._sharding = sharding
    self._shape = (batch_size,) + dataset.observation_shape
    self._local = (local_batch_slice(sharding, self._shape) if sharding is not None
                   else slice(0, batch_size))
    self._step = start_step
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self._next = self._pool.submit(self._load, self._step)

  def _load(self, step: int) -> jax.Array:
    rows = batch_indices(self._seed, step, self._batch_size, len(self._dataset))[self._local]
    local = gather_rows(self._dataset.images, rows)
    if self._sharding is None:
      return jax.device_put(local)
    return jax.make_array_from_process_local_data(self._sharding, local, self._shape)

  def __iter__(self):
    return self

  def __next__(self) -> tuple[int, jax.Array]:
    batch = self._next.result()
    step = self._step
    self._step += 1
    self._next = self._pool.submit(self._load, self._step)
    return step, batch

  def close(self) -> None:
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
