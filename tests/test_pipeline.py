"""Input pipeline: determinism, resume, epochs, sharding over 4 simulated devices."""

import sys
import textwrap

import numpy as np
import pytest

import children
from betatc_jax.data import pipeline
from betatc_jax.data.ground_truth import GroundTruthDataset


def _toy(n=50):
  images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
  return GroundTruthDataset(images, np.arange(n, dtype=np.int32)[:, None], ("id",), (n,))


def test_batches_are_a_pure_function_of_seed_and_step():
  a = pipeline.batch_indices(3, 17, 8, 50)
  b = pipeline.batch_indices(3, 17, 8, 50)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, pipeline.batch_indices(4, 17, 8, 50))
  assert not np.array_equal(a, pipeline.batch_indices(3, 18, 8, 50))


def test_each_epoch_visits_every_example_once():
  n, b = 40, 8
  rows = np.concatenate([pipeline.batch_indices(0, k, b, n) for k in range(3 * n // b)])
  for epoch in range(3):
    np.testing.assert_array_equal(np.sort(rows[epoch * n:(epoch + 1) * n]), np.arange(n))
  # Successive epochs are shuffled differently.
  assert not np.array_equal(rows[:n], rows[n:2 * n])


def test_batches_straddle_epochs_without_losing_examples():
  n, b = 50, 8   # 50 is not a multiple of 8
  stream = np.concatenate([pipeline.batch_indices(1, k, b, n) for k in range(25)])  # 200 = 4 epochs
  for epoch in range(4):
    np.testing.assert_array_equal(np.sort(stream[epoch * n:(epoch + 1) * n]), np.arange(n))


def test_a_global_batch_holds_its_rows_as_uint8():
  """The batch of step k is the images of ``batch_indices(seed, k)``, so a
  resumed run sees an uninterrupted run's batches; uint8 on the way (the
  step converts to float on the device)."""
  import jax
  ds = _toy()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  rows = pipeline.batch_indices(5, 3, 8, 50)
  batch = pipeline.global_batch(ds, rows, sharding)
  assert batch.dtype == np.uint8 and batch.shape == (8, 2, 2, 1)
  np.testing.assert_array_equal(np.asarray(batch)[:, 0, 0, 0], rows)


def test_batch_larger_than_dataset_rejected():
  with pytest.raises(ValueError, match="larger than the dataset"):
    pipeline.batch_indices(0, 0, 8, 6)


def test_sharding_over_four_devices():
  code = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
      import jax, numpy as np
      from betatc_jax import mesh as mesh_lib
      from betatc_jax.data import pipeline
      from betatc_jax.data.ground_truth import GroundTruthDataset
      n = 64
      images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 3, 3, 1), np.uint8)
      ds = GroundTruthDataset(images, np.arange(n, dtype=np.int32)[:, None], ("id",), (n,))
      data = mesh_lib.data_mesh()
      assert data.devices.size == 4
      batch = pipeline.global_batch(ds, pipeline.batch_indices(2, 0, 16, n),
                                    mesh_lib.data_sharding(data))
      shards = batch.addressable_shards
      assert len(shards) == 4 and all(s.data.shape == (4, 3, 3, 1) for s in shards)
      want = pipeline.batch_indices(2, 0, 16, n)
      np.testing.assert_array_equal(np.asarray(batch)[:, 0, 0, 0], want)
      try:
        pipeline.global_batch(ds, pipeline.batch_indices(0, 0, 18, n), mesh_lib.data_sharding(data))
      except ValueError as e:
        assert "not divisible by the number of devices (4)" in str(e)
      else:
        raise AssertionError("no error")
      print("OK")
  """)
  result = children.run([sys.executable, "-c", code])
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
