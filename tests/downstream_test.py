"""Downstream tasks and fairness (metrics/downstream.py): disentanglement_lib's
fairness_test.py and strong_downstream_task_test.py cases, re-created, and
bounds on grids where the answer is known."""

import itertools

import numpy as np
import pytest

from betatc_jax.metrics.downstream import (GridIndex, downstream_task, fairness,
                                           fairness_scores, inter_group_fairness, intervene,
                                           strong_downstream_task)

SIZES = (5, 5, 5, 5)


def grid(sizes=SIZES):
  """int [Π sizes, K]: every combination once, shuffled."""
  rows = np.array(list(itertools.product(*[range(n) for n in sizes])))
  return rows[np.random.default_rng(0).permutation(len(rows))]


# disentanglement_lib's fairness_test.py

def test_inter_group_fairness():
  """Pooled 1/3 : 2/3; the first sensitive class 0 : 1 (TV 1/3), the second
  1/2 : 1/2 (TV 1/6): mean 1/3 · 1/3 + 2/3 · 1/6 = 2/9, max 1/3."""
  mean, worst = inter_group_fairness(np.array([[0, 100], [100, 100]]))
  assert mean == pytest.approx(2 / 9) and worst == pytest.approx(1 / 3)


def test_compute_scores_dict():
  scores = np.array([[0., 2., 4.], [4., 0., 8.], [2., 10., 0.]])
  should_be = {
      "test:pred0:sens1": 2., "test:pred0:sens2": 4., "test:pred1:sens0": 4.,
      "test:pred1:sens2": 8., "test:pred2:sens0": 2., "test:pred2:sens1": 10.,
      "test:pred0:mean_sens": 3., "test:pred0:max_sens": 4., "test:pred1:mean_sens": 6.,
      "test:pred1:max_sens": 8., "test:pred2:mean_sens": 6., "test:pred2:max_sens": 10.,
      "test:sens0:mean_pred": 3., "test:sens0:max_pred": 4., "test:sens1:mean_pred": 6.,
      "test:sens1:max_pred": 10., "test:sens2:mean_pred": 6., "test:sens2:max_pred": 8.,
      "test:mean_sens:mean_pred": 5., "test:mean_sens:max_pred": 22. / 3.,
      "test:max_sens:mean_pred": 6., "test:max_sens:max_pred": 10.,
      "test:mean_pred:mean_sens": 5., "test:mean_pred:max_sens": 22. / 3.,
      "test:max_pred:mean_sens": 6., "test:max_pred:max_sens": 10.,
  }
  got = fairness_scores(scores, "test")
  assert got.keys() == should_be.keys()
  for key, value in should_be.items():
    assert got[key] == pytest.approx(value), key


def test_metric():
  """dlib runs its fairness on random codes; here the answer is known: a
  classifier of factor i on the identity code ignores the other factors
  (fair, < 0.05), and on a code that holds v_0 only mixed with v_1
  (c = v_0 + 2 v_1, v_1 in no other code) its predictions of v_0 move with
  v_1 (unfair, > 0.3)."""
  factors = grid()
  fair = fairness(factors.astype(float), factors, rng=np.random.default_rng(0),
                  num_train=1000, num_test_points_per_class=100)
  assert fair["mean_fairness:mean_pred:mean_sens"] < 0.05
  noise = np.random.default_rng(3).normal(size=len(factors))
  mixed = np.stack([factors[:, 0] + 2 * factors[:, 1], factors[:, 2], factors[:, 3], noise],
                   axis=1).astype(float)
  unfair = fairness(mixed, factors, rng=np.random.default_rng(0), num_train=1000)
  assert unfair["mean_fairness:pred0:sens1"] > 0.3 > fair["mean_fairness:pred0:sens1"] + 0.25


# disentanglement_lib's strong_downstream_task_test.py

def test_intervene():
  rng = np.random.default_rng(0)
  factors = grid()
  train, test = factors[rng.integers(len(factors), size=1000)], factors[:1000]
  for target in range(len(SIZES)):
    tr, te, j, a = intervene(train, test, target, SIZES, rng)
    assert j != target, "Wrong factor intervened on."
    assert (tr[:, j] == a).all(), "Training set not intervened on."
    assert (te[:, j] != a).all(), "Test set still holds the training value."
    assert (train[:, j] != a).any()          # the inputs are left as they were


def test_task():
  """Random codes (dlib's DummyData is noise): the strong test accuracy is
  near chance, 1/5, within dlib's [0, 0.3], with its boosted trees."""
  factors = grid()
  codes = np.random.default_rng(1).normal(size=(len(factors), 4))
  scores = strong_downstream_task(codes, factors, rng=np.random.default_rng(0),
                                  train_sizes=(1000,), num_test=1000, num_experiments=2,
                                  predictor="boosted_trees")
  assert 0.0 <= scores["1000:mean_strong_test_accuracy"] <= 0.3


# Downstream accuracy, bounds

def test_downstream_identity_is_near_perfect_and_noise_near_chance():
  factors = grid()
  good = downstream_task(factors.astype(float), factors, rng=np.random.default_rng(0),
                         train_sizes=(10, 1000), num_test=1000)
  assert good["1000:mean_test_accuracy"] > 0.95 and good["1000:min_test_accuracy"] > 0.9
  assert good["10:mean_test_accuracy"] < good["1000:mean_test_accuracy"]
  noise = downstream_task(np.random.default_rng(2).normal(size=factors.shape), factors,
                          rng=np.random.default_rng(0), train_sizes=(1000,), num_test=1000)
  assert abs(noise["1000:mean_test_accuracy"] - 0.2) < 0.05


def test_a_dataset_that_is_not_a_full_grid_is_refused():
  with pytest.raises(ValueError, match="every combination"):
    GridIndex(grid()[:-1])
  with pytest.raises(ValueError, match="predictor"):
    downstream_task(np.ones((25, 1)), grid((5, 5)), rng=np.random.default_rng(0),
                    train_sizes=(10,), predictor="svm")


def test_the_evaluation_reports_them_by_name_only():
  """``metrics.suite``: the downstream groups are not in the default set;
  asked for by name they give the functions' summaries, from the group's
  own generator."""
  from betatc_jax.data.ground_truth import GroundTruthDataset
  from betatc_jax.metrics import suite
  factors = grid((3, 4, 5))
  ds = GroundTruthDataset(np.zeros((len(factors), 1, 1, 1), np.uint8), factors.astype(np.int32),
                          ("a", "b", "c"), (3, 4, 5))
  codes = factors + 0.1 * np.random.default_rng(0).normal(size=factors.shape)
  assert not {"downstream", "strong_downstream", "fairness"} & set(suite.metric_groups(True))
  out = suite.other_metrics(codes, ds, np.random.default_rng(7), ("downstream", "fairness"))
  rngs = np.random.default_rng(7).spawn(len(suite.OTHER_METRIC_GROUPS))
  index = suite.OTHER_METRIC_GROUPS.index
  want = downstream_task(codes, factors, rng=rngs[index("downstream")])
  assert out["downstream_accuracy_1000"] == want["1000:mean_test_accuracy"]
  fair = fairness(codes, factors, rng=rngs[index("fairness")])
  assert out["fairness"] == fair["mean_fairness:mean_pred:mean_sens"]
  assert out["strong_generalization_gap"] is None and out["dci_disentanglement"] is None
