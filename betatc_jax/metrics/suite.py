"""The metrics beyond MIG and the ELBO decomposition that an evaluation
computes from the posterior means of every point of a dataset, chosen by
group name, each group from its own random generator.

Each group draws its points from its own child of the evaluation's
generator (by its position in ``OTHER_METRIC_GROUPS``), so its value is the
same whichever other groups are computed.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.metrics import downstream
from betatc_jax.metrics.beta_vae_score import beta_vae_score
from betatc_jax.metrics.dci import dci
from betatc_jax.metrics.dci_es import dci_es
from betatc_jax.metrics.factorvae import factorvae_score
from betatc_jax.metrics.irs import irs
from betatc_jax.metrics.modularity import modularity_explicitness
from betatc_jax.metrics.sap import sap_score, sap_score_continuous
from betatc_jax.metrics.unsupervised import UNSUPERVISED_SCORES, unsupervised_scores

DOWNSTREAM_SIZES = (10, 100, 1000, 10_000)     # disentanglement_lib's training sizes

# The metrics of disentanglement_lib's comparisons, on the posterior means of
# every point and all factors (shape included), its unsupervised scores and
# DCI-ES's explicitness and size, by the group that computes them (DCI gives
# three numbers, modularity two, unsupervised four, downstream one per
# training size, fairness two: the paper's mean and the worst case). New
# groups go last: each group's generator is a child of the evaluation's by
# position.
GROUP_METRICS = {
    "dci": ("dci_disentanglement", "dci_completeness", "dci_informativeness"),
    "modularity": ("modularity", "explicitness"),
    "factorvae_score": ("factorvae_score",),
    "sap_score": ("sap_score",),
    "beta_vae_score": ("beta_vae_score",),
    "unsupervised": UNSUPERVISED_SCORES,
    "sap_score_continuous": ("sap_score_continuous",),
    "irs": ("irs",),
    "downstream": tuple(f"downstream_accuracy_{n}" for n in DOWNSTREAM_SIZES),
    "strong_downstream": ("strong_generalization_gap",),
    "fairness": ("fairness", "fairness_max"),
    "dci_es": ("dci_es_explicitness", "dci_es_size"),
}
OTHER_METRIC_GROUPS = tuple(GROUP_METRICS)
OTHER_METRICS = tuple(m for group in GROUP_METRICS.values() for m in group)
# What other_metrics=True leaves out: the downstream tasks, fairness and
# DCI-ES, whose many classifier fits cost minutes (ask for them by name).
BY_NAME_GROUPS = ("downstream", "strong_downstream", "fairness", "dci_es")
DEFAULT_METRIC_GROUPS = tuple(g for g in OTHER_METRIC_GROUPS if g not in BY_NAME_GROUPS)
BY_NAME_METRICS = tuple(m for g in BY_NAME_GROUPS for m in GROUP_METRICS[g])


def metric_groups(other_metrics: bool | Collection[str]) -> tuple[str, ...]:
  """The ``OTHER_METRIC_GROUPS`` that ``other_metrics`` asks for (True:
  ``DEFAULT_METRIC_GROUPS``).

  Raises:
    ValueError: an unknown name.
  """
  if isinstance(other_metrics, bool):
    return DEFAULT_METRIC_GROUPS if other_metrics else ()
  unknown = sorted(set(other_metrics) - set(OTHER_METRIC_GROUPS))
  if unknown:
    raise ValueError(f"unknown metric(s) {unknown}; choose from {list(OTHER_METRIC_GROUPS)}")
  return tuple(g for g in OTHER_METRIC_GROUPS if g in other_metrics)


def _group_scores(group: str, mu: np.ndarray, dataset: GroundTruthDataset,
                  rng: np.random.Generator) -> dict[str, float]:
  """The ``GROUP_METRICS[group]`` values of the codes ``mu`` [N, D]."""
  factors = dataset.factors
  if group == "dci":
    found = dci(mu, factors, rng=rng)
  elif group == "modularity":
    found = modularity_explicitness(mu, factors, rng=rng)
  elif group == "factorvae_score":
    found = factorvae_score(mu, dataset, rng=rng)
  elif group == "sap_score":
    found = sap_score(mu, factors, rng=rng)
  elif group == "beta_vae_score":
    found = beta_vae_score(mu, dataset, rng=rng)
  elif group == "unsupervised":
    found = unsupervised_scores(mu, rng=rng)
  elif group == "sap_score_continuous":
    found = sap_score_continuous(mu, factors, rng=rng)
  elif group == "irs":
    found = irs(mu, factors, rng=rng)
  elif group == "dci_es":
    found = {f"dci_es_{k}": v for k, v in dci_es(mu, factors, rng=rng).items()}
  else:
    found = _downstream_scores(group, mu, factors, rng)
  return {k: found[k] for k in GROUP_METRICS[group]}


def timed_other_metrics(mu: np.ndarray, dataset: GroundTruthDataset, rng: np.random.Generator,
                        groups: Collection[str] = OTHER_METRIC_GROUPS
                        ) -> tuple[dict[str, float | None], dict[str, float]]:
  """``other_metrics`` and the seconds each group took."""
  rngs = dict(zip(OTHER_METRIC_GROUPS, rng.spawn(len(OTHER_METRIC_GROUPS))))
  out: dict[str, float | None] = dict.fromkeys(OTHER_METRICS)
  seconds = {}
  for group in (g for g in OTHER_METRIC_GROUPS if g in groups):
    start = time.perf_counter()
    out.update(_group_scores(group, mu, dataset, rngs[group]))
    seconds[group] = time.perf_counter() - start
  return out, seconds


def other_metrics(mu: np.ndarray, dataset: GroundTruthDataset, rng: np.random.Generator,
                  groups: Collection[str] = OTHER_METRIC_GROUPS) -> dict[str, float | None]:
  """The ``OTHER_METRICS`` of the codes ``mu`` [N, D] that ``groups`` names,
  each group from its own child of ``rng`` (by its position in
  ``OTHER_METRIC_GROUPS``); the rest None."""
  return timed_other_metrics(mu, dataset, rng, groups)[0]


def _downstream_scores(group: str, mu: np.ndarray, factors: np.ndarray,
                       rng: np.random.Generator) -> dict[str, float]:
  """Mean test accuracy of the logistic downstream task per training size
  (``downstream``), the strong generalisation gap at 10,000
  (``strong_downstream``), or the paper's fairness score with its worst case
  (``fairness``)."""
  if group == "downstream":
    found = downstream.downstream_task(mu, factors, rng=rng, train_sizes=DOWNSTREAM_SIZES)
    return {f"downstream_accuracy_{n}": found[f"{n}:mean_test_accuracy"]
            for n in DOWNSTREAM_SIZES}
  if group == "strong_downstream":
    found = downstream.strong_downstream_task(mu, factors, rng=rng)
    return {"strong_generalization_gap": found["10000:strong_generalization_gap"]}
  found = downstream.fairness(mu, factors, rng=rng)
  return {"fairness": found["mean_fairness:mean_pred:mean_sens"],
          "fairness_max": found["max_fairness:max_pred:max_sens"]}
