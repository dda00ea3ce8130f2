"""A sweep's methods, its config, and its grid of runs and populations.

A sweep config (``get_config``, or a file in ``configs/sweep_*.py``, as
big_vision's sweeps are) names the methods, each one's grid of values and
the seeds; ``base`` is the training config every run shares (batch, data,
evaluation, ...). Each (method, value, seed) is one run, a member of a
population (``betatc_jax.population``) whose root is ROOT, or ROOT/<method>
for a method whose fixed settings differ from the others' (the official
code's training), or ROOT/discriminator for FactorVAE (its state carries a
discriminator); ``population_size`` cuts a large population into parts.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_collections

from betatc_jax import cli
from betatc_jax import config as config_lib
from betatc_jax import default_config, losses
from betatc_jax.metrics import suite
from betatc_jax.members import MEMBER_KEYS, Member


class Method(NamedTuple):
  """A method of the sweep: its objective, estimator, main hyperparameter
  (the config key, the short name used in run names and the plot label), its
  default grid (disentanglement_lib's for the baselines), fixed overrides,
  and keys ``tied`` to the hyperparameter (set to the same value). A fixed
  key outside ``members.MEMBER_KEYS`` (the model's head, the likelihood)
  makes the method's runs a population of their own, in ROOT/<method>."""
  objective: str
  estimator: str
  key: str
  param: str
  symbol: str
  label: str
  grid: tuple[float, ...]
  fixed: tuple[tuple[str, Any], ...] = ()
  tied: tuple[str, ...] = ()


# The official code's training (rtqichen/beta-tcvae, vae_quant.py --tcvae):
# configs/dsprites_paper.py, whose docstring lists each detail.
OFFICIAL = (("model.param_init", "torch"), ("model.posterior_scale", "log_sigma"),
            ("objective.likelihood", "clamped_bernoulli"))

BETAS = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)


def _beta(objective: str, estimator: str, label: str, fixed=(), tied=()) -> Method:
  return Method(objective, estimator, "objective.beta", "beta", "β", label, BETAS, fixed, tied)


METHODS = {
    "beta_vae": _beta("beta_vae", "mss", "β-VAE"),
    "betatc_vae": _beta("betatc", "mss", "β-TCVAE (MSS)"),
    "betatc_vae_mws": _beta("betatc", "mws", "β-TCVAE (MWS)"),
    "betatc_official": _beta("betatc", "mws", "β-TCVAE (official)", OFFICIAL),
    "betatc_vae_mss_alpha": _beta("betatc", "mss", "β-TCVAE (MSS, α=β)",
                                  tied=("objective.alpha",)),
    "betatc_vae_mss_mws": _beta("betatc", "mss", "β-TCVAE (q(z) MSS, q(z_j) MWS)",
                                (("objective.marginal_estimator", "mws"),)),
    "betatc_vae_mws_mss": _beta("betatc", "mws", "β-TCVAE (q(z) MWS, q(z_j) MSS)",
                                (("objective.marginal_estimator", "mss"),)),
    "factorvae": Method("factorvae", "mss", "objective.factorvae_gamma", "gamma", "γ",
                        "FactorVAE", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)),
    "dip_vae_i": Method("dip_vae_i", "mss", "objective.dip_lambda_od", "lambda", "λ_od",
                        "DIP-VAE-I", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                        (("objective.dip_lambda_d_factor", 10.0),)),
    "dip_vae_ii": Method("dip_vae_ii", "mss", "objective.dip_lambda_od", "lambda", "λ_od",
                         "DIP-VAE-II", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                         (("objective.dip_lambda_d_factor", 1.0),)),
    "annealed_vae": Method("annealed_vae", "mss", "objective.capacity_max", "cmax", "C_max",
                           "AnnealedVAE", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)),
}
LABELS = {name: m.label for name, m in METHODS.items()}
BETA_METHODS = [name for name, m in METHODS.items() if m.param == "beta"]

# The training keys each run or population sets itself (a sweep's base may not).
SWEEP_KEYS = ("seed", "num_train_steps", "objective.name", "objective.estimator",
              "objective.capacity_steps", *{m.key for m in METHODS.values()},
              *{k for m in METHODS.values() for k, _ in m.fixed},
              *{k for m in METHODS.values() for k in m.tied})


def base_defaults() -> ml_collections.ConfigDict:
  """The training config a sweep's runs share, by default: the paper's MLP,
  Bernoulli, procedural dSprites (the 92,160-image sub-grid), B = 256, MIG at
  S = 10,000, evaluated by the sweep (not at the end of training)."""
  base = default_config.get_config()
  base.batch_size = 256
  base.log_every_steps = 50
  base.checkpoint_every_steps = 500
  base.keep_checkpoints = 1            # an MLP checkpoint with Adam state is ~154 MB a run
  base.progress_bar = False
  base.model.arch = "mlp"
  base.objective.likelihood = "bernoulli"
  base.dataset.name = "dsprites"
  base.dataset.subsample = (1, 1, 2, 2, 2)
  base.eval.at_end = False
  base.eval.num_samples = 10_000
  return base


def get_config() -> ml_collections.ConfigDict:
  """The default sweep: β-VAE and β-TCVAE (MSS) at β ∈ {1, 2, 4, 6, 8, 10},
  seeds 0 and 1, 500 steps, evaluated at 250 and 500."""
  c = ml_collections.ConfigDict()
  c.methods = "beta_vae,betatc_vae"    # comma-separated, from METHODS
  c.steps = 500                        # training steps per run
  c.eval_steps = (250,)                # earlier steps to evaluate at too
  c.betas = BETAS                      # the grid of the β methods
  c.grids = ml_collections.ConfigDict({name: () for name in METHODS})   # (): the default
  c.seeds = (0, 1)
  c.seeds_for = ml_collections.ConfigDict({name: () for name in METHODS})   # (): seeds
  c.capacity_steps = 700               # annealed_vae: steps for C to reach C_max
  c.population_size = 0                # > 0: at most this many runs per population
  c.root = "workdirs/sweep"            # the populations' workdirs
  c.out = "workdirs/sweep_out"         # the tables and figures
  c.report_only = False                # train nothing; rewrite the outputs
  c.host_data = False                  # gather batches on the host (vmapped mode)
  c.other_metrics = True               # FactorVAE, DCI, SAP, ... at `steps`
  c.skip_metrics = ""                  # of those, these not (metrics.suite.DEFAULT_METRIC_GROUPS)
  c.extra_metrics = ""                 # and these besides (e.g. downstream, fairness, dci_es)
  c.export = True                      # each run's final checkpoint in its own workdir
  c.timing_log = ""                    # append a JSON line per milestone to this file
  c.base = base_defaults()
  return c


def skipped_metrics(c: ml_collections.ConfigDict) -> list[str]:
  return cli.comma_names(c.skip_metrics)


def extra_metrics(c: ml_collections.ConfigDict) -> list[str]:
  return cli.comma_names(c.extra_metrics)


def final_metrics(c: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The other metric groups evaluated at ``steps``: with ``other_metrics``,
  ``metrics.suite.DEFAULT_METRIC_GROUPS`` less ``skip_metrics``, plus
  ``extra_metrics``."""
  chosen = set(extra_metrics(c))
  if c.other_metrics:
    chosen |= set(suite.DEFAULT_METRIC_GROUPS) - set(skipped_metrics(c))
  return tuple(g for g in suite.OTHER_METRIC_GROUPS if g in chosen)


def method_names(c: ml_collections.ConfigDict) -> list[str]:
  return cli.comma_names(c.methods)


def grid_of(c: ml_collections.ConfigDict, method: str) -> tuple[float, ...]:
  """A method's values: ``grids.<method>``, else ``betas`` for a β method,
  else its default grid."""
  if c.grids[method]:
    return tuple(float(v) for v in c.grids[method])
  return tuple(c.betas) if METHODS[method].param == "beta" else METHODS[method].grid


def seeds_of(c: ml_collections.ConfigDict, method: str) -> tuple[int, ...]:
  return tuple(c.seeds_for[method]) or tuple(c.seeds)


def milestones(c: ml_collections.ConfigDict) -> list[int]:
  """The steps each run is evaluated at: ``eval_steps`` and ``steps``
  (``--config.eval_steps=`` on the command line: none before ``steps``)."""
  return sorted({int(s) for s in c.eval_steps if s != ""} | {c.steps})


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any work, for a bad sweep config."""
  names = method_names(c)
  unknown = sorted(set(names) - set(METHODS))
  errors = [f"unknown method(s) {unknown}; choose from {sorted(METHODS)}"] if unknown else []
  if not names:
    errors.append("methods names no method")
  for method in (m for m in names if m in METHODS):
    values = grid_of(c, method)
    if not values or any(v < 0 for v in values):
      errors.append(f"{method} needs a non-empty grid of values >= 0, got {values}")
    if not seeds_of(c, method):
      errors.append(f"{method} has no seeds")
  if c.steps < 1 or any(s < 1 or s > c.steps for s in milestones(c)[:-1]) or \
      milestones(c)[-1] != c.steps:
    errors.append("steps must be >= 1 and every eval_steps in [1, steps)")
  errors += [f"{key} must be >= 0" for key in ("capacity_steps", "population_size") if c[key] < 0]
  unknown = sorted(set(skipped_metrics(c)) - set(suite.DEFAULT_METRIC_GROUPS))
  errors += [f"skip_metrics names unknown metric(s) {unknown}; choose from "
             f"{list(suite.DEFAULT_METRIC_GROUPS)}"] if unknown else []
  unknown = sorted(set(extra_metrics(c)) - set(suite.OTHER_METRIC_GROUPS))
  errors += [f"extra_metrics names unknown metric(s) {unknown}; choose from "
             f"{list(suite.OTHER_METRIC_GROUPS)}"] if unknown else []
  defaults = base_defaults()
  errors += [f"base.{key} is set by the sweep (its grid, seeds or steps), not in base"
             for key in SWEEP_KEYS if _get(c.base, key) != _get(defaults, key)]
  if errors:
    raise ValueError("Invalid sweep config: " + "; ".join(errors) + ".")
  population_base(c, c.steps)


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
  for part in key.split("."):
    config = config[part]
  return config


def run_name(method: str, value: float, seed: int) -> str:
  return f"{method}_{METHODS[method].param}{value:g}_seed{seed}"


def static_settings(method: str) -> dict[str, Any]:
  """The method's fixed keys that its population shares (outside
  ``members.MEMBER_KEYS``)."""
  return {k: v for k, v in METHODS[method].fixed if k not in MEMBER_KEYS}


def population_base(c: ml_collections.ConfigDict, steps: int, method: str | None = None
                    ) -> ml_collections.ConfigDict:
  """The base config of a population trained to ``steps``: the sweep's base,
  the steps, and the method's ``static_settings``.

  Raises:
    ValueError: an invalid config.
  """
  base = ml_collections.ConfigDict(c.base.to_dict())
  base.num_train_steps = steps
  base.log_every_steps = min(base.log_every_steps, steps)
  base.checkpoint_every_steps = min(base.checkpoint_every_steps, steps)
  for key, value in (static_settings(method) if method else {}).items():
    config_lib.set_config_key(base, key, value)
  config_lib.validate_config(base)
  return base


def member_overrides(method: str, value: float, seed: int, capacity_steps: int
                     ) -> dict[str, Any]:
  """A run's ``members.MEMBER_KEYS`` settings: the method's objective,
  estimator, hyperparameter ``value`` (and the keys tied to it), its fixed
  member keys, and ``seed``."""
  m = METHODS[method]
  statics = static_settings(method)
  overrides = {"seed": seed, "objective.name": m.objective, "objective.estimator": m.estimator,
               m.key: value, **{k: value for k in m.tied},
               **{k: v for k, v in m.fixed if k not in statics}}
  if m.objective == "annealed_vae":
    overrides["objective.capacity_steps"] = capacity_steps
  return overrides


def runs(c: ml_collections.ConfigDict) -> list[tuple[str, float, int]]:
  """(method, hyperparameter value, seed) of every run, a whole seed first."""
  names = method_names(c)
  seeds = sorted({s for m in names for s in seeds_of(c, m)})
  return [(method, value, seed) for seed in seeds for method in names
          for value in grid_of(c, method) if seed in seeds_of(c, method)]


def population_root(c: ml_collections.ConfigDict, method: str) -> pathlib.Path:
  """ROOT, ROOT/discriminator (FactorVAE) or ROOT/<method> (static settings)."""
  root = pathlib.Path(c.root)
  if METHODS[method].objective in losses.DISCRIMINATOR_OBJECTIVES:
    if (root / "critic").is_dir() and not (root / "discriminator").is_dir():
      raise ValueError(f"{root / 'critic'} holds FactorVAE runs of an earlier version of this "
                       f"sweep: rename it to {root / 'discriminator'} to resume them.")
    return root / "discriminator"
  return root / method if static_settings(method) else root


def populations(c: ml_collections.ConfigDict) -> dict[pathlib.Path, list[tuple[str, float, int]]]:
  """The runs by population: root -> its (method, value, seed), in grid
  order. With ``population_size`` N a root of more than N runs is cut into
  ROOT/part0, part1, ... of at most N runs (each whole (method, value)
  groups, the seeds UDR compares; a larger group is a part of its own),
  trained one after another: a population's states are all in memory at
  once (~154 MB a run for the MLP with Adam)."""
  by_root: dict[pathlib.Path, list[tuple[str, float, int]]] = {}
  for run in runs(c):
    by_root.setdefault(population_root(c, run[0]), []).append(run)
  out: dict[pathlib.Path, list[tuple[str, float, int]]] = {}
  for root, group in by_root.items():
    if not c.population_size or len(group) <= c.population_size:
      out[root] = group
      continue
    by_value: dict[tuple[str, float], list[tuple[str, float, int]]] = {}
    for run in group:
      by_value.setdefault(run[:2], []).append(run)
    parts: list[list[tuple[str, float, int]]] = [[]]
    for seeds in by_value.values():
      if parts[-1] and len(parts[-1]) + len(seeds) > c.population_size:
        parts.append([])
      parts[-1] += seeds
    out.update({root / f"part{i}": part for i, part in enumerate(parts)})
  return out


def population_of(c: ml_collections.ConfigDict) -> dict[str, pathlib.Path]:
  """run name -> the root of the population that trains it."""
  return {run_name(*run): root for root, group in populations(c).items() for run in group}


def run_dir(c: ml_collections.ConfigDict, method: str, value: float, seed: int) -> pathlib.Path:
  name = run_name(method, value, seed)
  return population_of(c)[name] / "members" / name


def members_of(c: ml_collections.ConfigDict) -> dict[pathlib.Path, list[Member]]:
  """The populations of the grid: root -> its members."""
  return {root: [Member(run_name(*run), member_overrides(*run, c.capacity_steps)) for run in group]
          for root, group in populations(c).items()}


def udr_groups(names: list[str], run_of: Mapping[str, tuple[str, float, int]]
               ) -> list[list[str]]:
  """Run names grouped by (method, value): the seeds UDR compares."""
  groups: dict[tuple[str, float], list[str]] = {}
  for name in names:
    groups.setdefault(run_of[name][:2], []).append(name)
  return list(groups.values())
