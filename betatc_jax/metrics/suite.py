"""The metrics beyond MIG and the ELBO decomposition that an evaluation
computes from the posterior means of every point of a dataset, chosen by
group name, each group from its own random generator.

Each group draws its points from its own child of the evaluation's
generator (by its position in ``OTHER_METRIC_GROUPS``), so its value is the
same whichever other groups are computed.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.metrics import downstream
from betatc_jax.metrics.beta_vae_score import beta_vae_score
from betatc_jax.metrics.dci import dci
from betatc_jax.metrics.factorvae import factorvae_score
from betatc_jax.metrics.irs import irs
from betatc_jax.metrics.modularity import modularity_explicitness
from betatc_jax.metrics.sap import sap_score, sap_score_continuous
from betatc_jax.metrics.unsupervised import UNSUPERVISED_SCORES, unsupervised_scores

DOWNSTREAM_SIZES = (10, 100, 1000, 10_000)     # disentanglement_lib's training sizes

# The metrics of disentanglement_lib's comparisons, on the posterior means of
# every point and all factors (shape included), and its unsupervised scores;
# OTHER_METRIC_GROUPS names what computes them (DCI gives three numbers,
# modularity two, unsupervised four, downstream one per training size,
# fairness two: the paper's mean and the worst case). New groups go last:
# each group's generator is a child of the evaluation's by position.
OTHER_METRICS = ("factorvae_score", "dci_disentanglement", "dci_completeness",
                 "dci_informativeness", "sap_score", "modularity", "explicitness",
                 "beta_vae_score", *UNSUPERVISED_SCORES, "sap_score_continuous", "irs",
                 *(f"downstream_accuracy_{n}" for n in DOWNSTREAM_SIZES),
                 "strong_generalization_gap", "fairness", "fairness_max")
OTHER_METRIC_GROUPS = ("dci", "modularity", "factorvae_score", "sap_score", "beta_vae_score",
                       "unsupervised", "sap_score_continuous", "irs", "downstream",
                       "strong_downstream", "fairness")
# What other_metrics=True computes: all but the downstream tasks and fairness,
# whose hundreds of classifier fits cost minutes (ask for them by name).
DEFAULT_METRIC_GROUPS = OTHER_METRIC_GROUPS[:8]


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


def other_metrics(mu: np.ndarray, dataset: GroundTruthDataset, rng: np.random.Generator,
                   groups: Collection[str] = OTHER_METRIC_GROUPS) -> dict[str, float | None]:
  """The ``OTHER_METRICS`` of the codes ``mu`` [N, D] that ``groups`` names
  (~30 s at 92k points for all), each from its own child of ``rng``; the
  rest None."""
  rngs = dict(zip(OTHER_METRIC_GROUPS, rng.spawn(len(OTHER_METRIC_GROUPS))))
  out: dict[str, float | None] = dict.fromkeys(OTHER_METRICS)
  if "dci" in groups:
    found = dci(mu, dataset.factors, rng=rngs["dci"])
    out.update({k: found[k] for k in OTHER_METRICS if k.startswith("dci_")})
  if "modularity" in groups:
    found = modularity_explicitness(mu, dataset.factors, rng=rngs["modularity"])
    out.update(modularity=found["modularity"], explicitness=found["explicitness"])
  if "factorvae_score" in groups:
    out["factorvae_score"] = factorvae_score(mu, dataset, rng=rngs["factorvae_score"]
                                             )["factorvae_score"]
  if "sap_score" in groups:
    out["sap_score"] = sap_score(mu, dataset.factors, rng=rngs["sap_score"])["sap_score"]
  if "beta_vae_score" in groups:
    out["beta_vae_score"] = beta_vae_score(mu, dataset, rng=rngs["beta_vae_score"]
                                           )["beta_vae_score"]
  if "unsupervised" in groups:
    out.update(unsupervised_scores(mu, rng=rngs["unsupervised"]))
  if "sap_score_continuous" in groups:
    out["sap_score_continuous"] = sap_score_continuous(
        mu, dataset.factors, rng=rngs["sap_score_continuous"])["sap_score_continuous"]
  if "irs" in groups:
    out["irs"] = irs(mu, dataset.factors, rng=rngs["irs"])["irs"]
  out.update(_downstream_metrics(mu, dataset, rngs, groups))
  return out


def _downstream_metrics(mu: np.ndarray, dataset: GroundTruthDataset,
                        rngs: dict[str, np.random.Generator], groups: Collection[str]
                        ) -> dict[str, float]:
  """Mean test accuracy of the logistic downstream task per training size,
  the strong generalisation gap at 10,000, and the paper's fairness score
  with its worst case, for the ``groups`` that ask for them."""
  out = {}
  if "downstream" in groups:
    found = downstream.downstream_task(mu, dataset.factors, rng=rngs["downstream"],
                                       train_sizes=DOWNSTREAM_SIZES)
    out.update({f"downstream_accuracy_{n}": found[f"{n}:mean_test_accuracy"]
                for n in DOWNSTREAM_SIZES})
  if "strong_downstream" in groups:
    found = downstream.strong_downstream_task(mu, dataset.factors,
                                              rng=rngs["strong_downstream"])
    out["strong_generalization_gap"] = found["10000:strong_generalization_gap"]
  if "fairness" in groups:
    found = downstream.fairness(mu, dataset.factors, rng=rngs["fairness"])
    out.update(fairness=found["mean_fairness:mean_pred:mean_sens"],
               fairness_max=found["max_fairness:max_pred:max_sens"])
  return out
