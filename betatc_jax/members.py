"""The members of a population: a name and overrides of a shared base
config (only ``MEMBER_KEYS``), their configs, and their batches.

Member i is the single run of its config (``member_config``): the same
initialisation, noise (``fold_in(key, step)``) and batches
(``pipeline.batch_indices(seed, step)``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from betatc_jax import config as config_lib
from betatc_jax import losses
from betatc_jax.data import pipeline

MEMBER_KEYS = ("seed", "learning_rate", "lr_schedule", "lr_decay", "objective.name",
               "objective.alpha", "objective.beta", "objective.gamma", "objective.anneal_steps",
               "objective.estimator", "objective.marginal_estimator",
               "objective.factorvae_gamma", "objective.dip_lambda_od",
               "objective.dip_lambda_d_factor", "objective.capacity_gamma",
               "objective.capacity_max", "objective.capacity_steps")
_NAME = re.compile(r"^[A-Za-z0-9_.=-]+$")


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a population: a name (its workdir under ``members/``) and its
  overrides of the base config, keyed by dotted path (``"objective.beta"``)."""
  name: str
  overrides: Mapping[str, Any]


def member_config(base: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """The single-run config of ``member``: ``base`` with its overrides.

  Raises:
    ValueError: for an override outside ``MEMBER_KEYS``.
  """
  bad = sorted(set(member.overrides) - set(MEMBER_KEYS))
  if bad:
    raise ValueError(f"Member {member.name!r} overrides {bad}; a member may only set "
                     f"{', '.join(MEMBER_KEYS)} (the rest is shared by the population).")
  config = ml_collections.ConfigDict(base.to_dict())
  for key, value in member.overrides.items():
    config_lib.set_config_key(config, key, value)
  return config


def validate_population(base: ml_collections.ConfigDict, members: Sequence[Member]) -> list:
  """Checks the base and every member config before any work.

  Returns:
    The member configs, in order.

  Raises:
    ValueError: no members, a repeated or unusable name, a bad override, or
      an invalid member config (named).
  """
  if not members:
    raise ValueError("A population needs at least one member.")
  names = [m.name for m in members]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"Member names must be unique; repeated: {repeated}.")
  for name in names:
    if not _NAME.match(name):
      raise ValueError(f"Member name {name!r} is not a plain directory name "
                       "(letters, digits, '_', '-', '.', '=').")
  config_lib.validate_config(base)
  configs = []
  for member in members:
    config = member_config(base, member)
    try:
      config_lib.validate_config(config)
    except ValueError as e:
      raise ValueError(f"Member {member.name!r}: {e}") from e
    configs.append(config)
  with_discriminator = {c.objective.name in losses.DISCRIMINATOR_OBJECTIVES for c in configs}
  if len(with_discriminator) > 1:
    raise ValueError(
        f"Members with a discriminator ({', '.join(losses.DISCRIMINATOR_OBJECTIVES)}) and members "
        "without one cannot share a population (their train states differ): train them as "
        "two populations.")
  return configs


def member_batch_indices(seeds: Sequence[int], start_step: int, num_steps: int, batch_size: int,
                         dataset_size: int) -> np.ndarray:
  """int32 [S, K, B]: each member's ``pipeline.batch_indices`` for S steps
  (members with the same seed share their data order, computed once)."""
  by_seed = {}
  for seed in dict.fromkeys(seeds):
    by_seed[seed] = np.stack([pipeline.batch_indices(seed, step, batch_size, dataset_size)
                              for step in range(start_step, start_step + num_steps)])
  return np.stack([by_seed[s] for s in seeds], axis=1).astype(np.int32)
