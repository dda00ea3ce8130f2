"""Configs: the defaults on top of which a config is read, setting a dotted
key, validation before any work, and what a rerun may change.

The default config (``default_config.get_config``) is the schema: a config
may set only the keys it has. ``validate_config`` raises one ValueError
listing every invalid value; ``config_changes`` lists what differs from a
saved run, except ``FREE_TO_CHANGE``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ml_collections

from betatc_jax import default_config, estimators, layers, losses, models

LR_SCHEDULES = ("constant", "exponential_per_epoch")

# Keys a rerun in the same workdir may change freely: the step budget (how a
# run is extended), what only changes what is logged, saved or evaluated, and
# how the processes are launched (each has its own process_id).
FREE_TO_CHANGE = ("num_train_steps", "progress_bar", "log_every_steps", "checkpoint_every_steps",
                  "keep_checkpoints", "eval.", "distributed.")


def _unknown_keys(config: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = ""
                  ) -> list[str]:
  unknown = []
  for key, value in config.items():
    if key not in schema:
      unknown.append(prefix + key)
    elif isinstance(value, (Mapping, ml_collections.ConfigDict)) and \
        isinstance(schema[key], (Mapping, ml_collections.ConfigDict)):
      unknown += _unknown_keys(value, schema[key], f"{prefix}{key}.")
  return unknown


def with_defaults(config: Mapping[str, Any] | ml_collections.ConfigDict
                  ) -> ml_collections.ConfigDict:
  """``config`` on top of the default config: keys added since a run was
  saved take their default values."""
  def merge(base, update):
    for key, value in update.items():
      if isinstance(value, (Mapping, ml_collections.ConfigDict)) and key in base:
        merge(base[key], value)
      else:
        base[key] = value
  merged = default_config.get_config()
  merge(merged, config)
  return merged


def set_config_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets the dotted ``key`` (e.g. ``"objective.beta"``) of ``config`` in place.

  Raises:
    ValueError: no such key, or a value of the wrong type.
  """
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise ValueError(f"{key}: no such config key")
  try:
    node[leaf] = value
  except TypeError as e:
    raise ValueError(f"{key}={value!r}: {e}") from None


def _at_least(config: ml_collections.ConfigDict, keys: tuple[str, ...], low: float
              ) -> list[tuple[bool, str]]:
  checks = []
  for key in keys:
    value = config
    for part in key.split("."):
      value = value[part]
    checks.append((value >= low, f"{key} must be >= {low:g}, got {value}"))
  return checks


def _checks(config: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
  """(condition, message) of every rule a config must satisfy."""
  obj, model = config.objective, config.model

  def one_of(value, allowed, key):
    return value in allowed, f"{key} must be one of {allowed}, got {value!r}"

  return [
      one_of(obj.name, losses.OBJECTIVES, "objective.name"),
      one_of(obj.estimator, estimators.ESTIMATORS, "objective.estimator"),
      (obj.marginal_estimator in ("",) + estimators.ESTIMATORS,
       f"objective.marginal_estimator must be '' (the estimator's own) or one of "
       f"{estimators.ESTIMATORS}, got {obj.marginal_estimator!r}"),
      one_of(obj.likelihood, losses.LIKELIHOODS, "objective.likelihood"),
      *_at_least(config, tuple(f"objective.{k}" for k in (
          "beta", "alpha", "gamma", "anneal_steps", "factorvae_gamma", "dip_lambda_od",
          "dip_lambda_d_factor", "capacity_gamma", "capacity_max", "capacity_steps")), 0),
      (obj.discriminator_layers >= 1,
       f"objective.discriminator_layers must be >= 1 (FactorVAE's discriminator needs a hidden "
       f"layer), got {obj.discriminator_layers}"),
      *_at_least(config, ("objective.discriminator_width",), 1),
      (obj.discriminator_learning_rate > 0,
       f"objective.discriminator_learning_rate must be > 0, got {obj.discriminator_learning_rate}"),
      (0 <= obj.discriminator_b1 < 1 and 0 <= obj.discriminator_b2 < 1,
       "objective.discriminator_b1 and _b2 must be in [0, 1)"),
      one_of(model.arch, models.ARCHS, "model.arch"),
      *_at_least(config, ("model.latent_dim",), 1),
      one_of(model.output_activation, models.OUTPUT_ACTIVATIONS, "model.output_activation"),
      one_of(model.conv_impl, layers.CONV_IMPLS, "model.conv_impl"),
      one_of(model.param_init, models.PARAM_INITS, "model.param_init"),
      one_of(model.posterior_scale, models.POSTERIOR_SCALES, "model.posterior_scale"),
      (config.batch_size >= 2,
       f"batch_size must be >= 2 (with one sample every estimator's log q(z) is that sample's "
       f"own posterior, so TC and MI are constants and β has no effect), got "
       f"{config.batch_size}"),
      (config.learning_rate > 0, f"learning_rate must be > 0, got {config.learning_rate}"),
      one_of(config.lr_schedule, LR_SCHEDULES, "lr_schedule"),
      (0 < config.lr_decay <= 1, f"lr_decay must be in (0, 1], got {config.lr_decay}"),
      *_at_least(config, ("num_train_steps", "log_every_steps", "checkpoint_every_steps",
                          "keep_checkpoints"), 1),
      (not (obj.likelihood in losses.LOGIT_LIKELIHOODS and model.output_activation == "tanh"),
       "a Bernoulli likelihood needs logits: use model.output_activation='none'"),
      (config.selection.members == 0 or config.selection.members >= 2,
       f"selection.members must be 0 (off) or >= 2, got {config.selection.members}"),
      (not config.selection.members or 1 <= config.selection.steps < config.num_train_steps,
       f"selection.steps must be in [1, num_train_steps), got {config.selection.steps}"),
      (len(config.dataset.subsample) == 5 and min(config.dataset.subsample) >= 1,
       f"dataset.subsample must be 5 steps >= 1 (one per dSprites factor), got "
       f"{tuple(config.dataset.subsample)}"),
  ]


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any work, for unknown keys or invalid values
  (every one, in one message)."""
  unknown = _unknown_keys(config, default_config.get_config())
  if unknown:
    raise ValueError(f"Unknown config key(s): {', '.join(sorted(unknown))}.")
  errors = [message for ok, message in _checks(config) if not ok]
  if errors:
    raise ValueError("Invalid config: " + "; ".join(errors) + ".")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def config_changes(saved: Mapping[str, Any], config: ml_collections.ConfigDict
                   ) -> dict[str, list[Any]]:
  """key -> [saved value, new value] for every key that differs, except
  ``FREE_TO_CHANGE`` (keys, and ``eval.*`` and ``distributed.*``)."""
  old, new = _flatten(saved), _flatten(json.loads(config.to_json()))
  return {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k) and not k.startswith(FREE_TO_CHANGE)}
