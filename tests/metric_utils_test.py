"""What the metrics share (metrics/codes.py, discrete_mutual_info):
disentanglement_lib's utils_test.py cases, re-created (its discretizer
numbers bins from 1, ours from 0)."""

import numpy as np
import pytest

from betatc_jax.metrics.codes import discretize, split_by_fraction, split_rows
from betatc_jax.metrics.mig import discrete_mutual_info


def test_histogram_discretizer():
  target = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, .5, .4, .3, .2, .1]])
  should_be = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]) - 1
  np.testing.assert_array_equal(discretize(target.T, 3).T, should_be)


def test_discrete_entropy():
  for row in ([1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]):
    np.testing.assert_allclose(discrete_mutual_info(np.array(row), np.array(row)), np.log(3))


def test_discrete_mutual_info():
  xs = np.array([[1, 2, 1, 2], [1, 1, 2, 2]])
  ys = np.array([[1, 2, 1, 2], [2, 2, 1, 1]])
  result = np.array([[discrete_mutual_info(x, y) for y in ys] for x in xs])
  np.testing.assert_allclose(result, [[np.log(2), 0.0], [0.0, np.log(2)]], atol=1e-12)


def test_split_train_test():
  train, test = split_by_fraction(100, 0.9)
  assert len(train) == 90 and len(test) == 10
  np.testing.assert_array_equal(np.concatenate([train, test]), np.arange(100))


def test_split_by_fraction_rounds_up_and_permutes_with_a_generator():
  train, test = split_by_fraction(7, 0.5, np.random.default_rng(0))
  assert len(train) == 4 and len(test) == 3
  assert sorted(np.concatenate([train, test])) == list(range(7))
  assert list(train) != [0, 1, 2, 3]
  assert len(split_by_fraction(5, 1.0)[1]) == 0
  with pytest.raises(ValueError, match="train_fraction"):
    split_by_fraction(10, 0.0)


def test_split_rows_keeps_its_cap_at_half():
  """The metrics' own split (disentanglement_lib's sizes, drawn once) caps
  the training rows at half: 90 + 10 asked of 100 gives 50 + 10."""
  train, test = split_rows(100, 90, 10, np.random.default_rng(0))
  assert len(train) == 50 and len(test) == 10 and not set(train) & set(test)
