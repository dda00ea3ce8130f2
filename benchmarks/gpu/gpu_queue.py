"""The GPU job's queue (benchmarks/gpu/queue.toml): which runs come next.

A run is identified by its key (``KEY_FIELDS``): everything that defines
it, read from the run's resolved config (the sweep's method, hyperparameter
and seed on the queue's shared settings). The job skips every run whose key
has a finished row in results_paper/results.csv, and takes the next runs in
queue order whose training and evaluation fit the time left (``fit``).
Runs share a population when their static settings and steps agree
(``populations``): the official mode's runs form one, FactorVAE's another,
the rest a third.

Cost model (``cost``): each population costs its compilation plus
``steps × step_seconds(k)`` for its k runs, and each run one evaluation.
``step_seconds`` is linear in k through the two population sizes the job
measured on its device (``linear_step_seconds``).
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from betatc_jax import members as members_lib  # noqa: E402
from betatc_jax.sweep import grid as sweep  # noqa: E402

QUEUE = ROOT / "benchmarks" / "gpu" / "queue.toml"
KEY_FIELDS = ("dataset", "subsample", "batch_size", "learning_rate", "num_train_steps",
              "objective", "estimator", "marginal_estimator", "hyperparameter", "value", "alpha",
              "beta", "gamma", "param_init", "posterior_scale", "likelihood", "matmul_precision",
              "seed")
SETTINGS_KEYS = ("dataset", "subsample", "batch_size", "learning_rate", "steps", "eval_samples")
EXPERIMENT_KEYS = ("name", "about", "method", "betas", "seeds", "steps")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every run of a job shares (the queue's ``[defaults]``)."""
  dataset: str = "dsprites"
  subsample: tuple[int, ...] = (1, 1, 1, 1, 1)
  batch_size: int = 2048
  learning_rate: float = 1e-3
  steps: int = 18_000
  eval_samples: int = 10_000
  matmul_precision: str = "default"


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the queue: its experiment, sweep method, hyperparameter
  value, seed, steps and key (``KEY_FIELDS`` -> str)."""
  experiment: str
  method: str
  value: float
  seed: int
  steps: int
  key: tuple[tuple[str, str], ...]

  @property
  def name(self) -> str:
    return sweep.run_name(self.method, self.value, self.seed)

  @property
  def population(self) -> tuple[str, int]:
    """Runs with the same (population kind, steps) train together."""
    return population_kind(self.method), self.steps


def population_kind(method: str) -> str:
  """"critic" (a discriminator), the method itself (static settings of its
  own, e.g. the official mode), or "plain"."""
  from betatc_jax import losses
  if sweep.METHODS[method].objective in losses.DISCRIMINATOR_OBJECTIVES:
    return "critic"
  return method if sweep.static_settings(method) else "plain"


# ------------------------------------------------------------------ keys

def sweep_config(settings: Settings):
  """The sweep config (``betatc_jax.sweep``) of the queue's settings."""
  c = sweep.get_config()
  c.capacity_steps = settings.steps // 3
  c.base.batch_size = settings.batch_size
  c.base.learning_rate = settings.learning_rate
  c.base.dataset.subsample = tuple(settings.subsample)
  c.base.eval.num_samples = settings.eval_samples
  c.base.checkpoint_every_steps = settings.steps
  return c


def population_config(settings: Settings, method: str, steps: int):
  """The shared config of a population of ``method``'s runs, for ``steps`` steps."""
  base = sweep.population_base(sweep_config(settings), steps, method)
  base.dataset.name = settings.dataset
  return base


def member(settings: Settings, method: str, value: float, seed: int):
  """The ``members.Member`` of one run of the queue."""
  return members_lib.Member(sweep.run_name(method, value, seed), sweep.member_overrides(
      method, value, seed, sweep_config(settings).capacity_steps))


def run_config(settings: Settings, method: str, value: float, seed: int, steps: int):
  """The resolved single-run config of one run of the queue."""
  return members_lib.member_config(population_config(settings, method, steps),
                                  member(settings, method, value, seed))


def config_key(config, method: str, matmul_precision: str) -> dict[str, str]:
  """``KEY_FIELDS`` of a resolved config, as strings (the csv's)."""
  o, m = config.objective, sweep.METHODS[method]
  value = config
  for part in m.key.split("."):
    value = value[part]
  return {"dataset": config.dataset.name,
          "subsample": " ".join(str(s) for s in config.dataset.subsample),
          "batch_size": str(config.batch_size), "learning_rate": f"{config.learning_rate:g}",
          "num_train_steps": str(config.num_train_steps), "objective": o.name,
          "estimator": o.estimator, "marginal_estimator": o.marginal_estimator or o.estimator,
          "hyperparameter": m.key, "value": f"{value:g}", "alpha": f"{o.alpha:g}",
          "beta": f"{o.beta:g}", "gamma": f"{o.gamma:g}", "param_init": config.model.param_init,
          "posterior_scale": config.model.posterior_scale, "likelihood": o.likelihood,
          "matmul_precision": matmul_precision, "seed": str(config.seed)}


def run(settings: Settings, experiment: str, method: str, value: float, seed: int,
        steps: int | None = None) -> Run:
  steps = steps or settings.steps
  config = run_config(settings, method, value, seed, steps)
  key = config_key(config, method, settings.matmul_precision)
  return Run(experiment, method, float(value), int(seed), steps, tuple(key.items()))


def read_rows(path: pathlib.Path) -> list[dict[str, str]]:
  """A csv file's rows ([] when it does not exist)."""
  if not path.is_file():
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def row_key(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
  """A results.csv row's key, comparable with ``Run.key``."""
  return tuple((k, str(row[k])) for k in KEY_FIELDS)


def finished(row: Mapping[str, Any]) -> bool:
  """A row counts as done when it reached its steps, or froze on the way
  (a diverged run would diverge again)."""
  return str(row["steps"]) == str(row["num_train_steps"]) or bool(row.get("frozen_at_step"))


# ------------------------------------------------------------------ the queue

def load_queue(path: str | pathlib.Path = QUEUE, overrides: Mapping[str, Any] | None = None,
               matmul_precision: str = "default") -> tuple[Settings, list[Run]]:
  """The queue's settings and its runs in priority order (repeats dropped).

  Args:
    path: the queue file.
    overrides: settings that replace the queue's (``steps`` here also
      replaces each experiment's), e.g. the smoke run's toy sizes.
    matmul_precision: training's ``jax.default_matmul_precision`` (keyed).

  Raises:
    ValueError: an unknown key, method or missing field, named with its
      experiment.
  """
  text = pathlib.Path(path).read_text()
  data = tomllib.loads(text)
  unknown = sorted(set(data) - {"defaults", "experiment"})
  defaults = data.get("defaults", {})
  unknown += sorted(f"defaults.{k}" for k in set(defaults) - set(SETTINGS_KEYS))
  if unknown:
    raise ValueError(f"{path}: unknown keys {unknown}")
  defaults = dict(defaults)
  if "subsample" in defaults:
    defaults["subsample"] = tuple(defaults["subsample"])
  overrides = dict(overrides or {})
  settings = Settings(**{**defaults, **overrides, "matmul_precision": matmul_precision})
  runs = []
  for entry in data.get("experiment", []):
    name = entry.get("name", "?")
    bad = sorted(set(entry) - set(EXPERIMENT_KEYS))
    missing = [k for k in ("name", "method", "betas", "seeds") if k not in entry]
    if bad or missing:
      raise ValueError(f"{path}: experiment {name!r}: unknown keys {bad}, missing {missing}")
    if entry["method"] not in sweep.METHODS:
      raise ValueError(f"{path}: experiment {name!r}: unknown method {entry['method']!r}; "
                       f"choose from {sorted(sweep.METHODS)}")
    for seed in entry["seeds"]:
      for value in entry["betas"]:
        steps = overrides.get("steps") or entry.get("steps")
        runs.append(run(settings, name, entry["method"], value, seed, steps))
  return settings, unique(runs)


def unique(runs: Iterable[Run]) -> list[Run]:
  """``runs`` without repeated keys (the first stays)."""
  seen, out = set(), []
  for r in runs:
    if r.key not in seen:
      seen.add(r.key)
      out.append(r)
  return out


def pending(runs: Sequence[Run], rows: Iterable[Mapping[str, Any]]) -> list[Run]:
  """The runs, in order, whose key has no finished row in ``rows``."""
  done = {row_key(r) for r in rows if finished(r)}
  return [r for r in runs if r.key not in done]


def populations(runs: Sequence[Run]) -> list[list[Run]]:
  """``runs`` grouped by ``Run.population``, groups in order of first run."""
  groups: dict[tuple[str, int], list[Run]] = {}
  for r in runs:
    groups.setdefault(r.population, []).append(r)
  return list(groups.values())


def linear_step_seconds(measured: Sequence[tuple[int, float]]) -> Callable[[int], float]:
  """Step seconds of a k-run population: the line through the measured
  (k, seconds) points (the first and last), never below the smallest."""
  (k1, t1), (k2, t2) = measured[0], measured[-1]
  slope = (t2 - t1) / (k2 - k1) if k2 != k1 else t1 / max(k1, 1)
  return lambda k: max(t1 + slope * (k - k1), min(t1, t2))


def cost(runs: Sequence[Run], step_seconds: Callable[[int], float], eval_seconds: float,
         compile_seconds: float) -> float:
  """Seconds to train ``runs`` (``populations``) and evaluate each."""
  return sum(compile_seconds + g[0].steps * step_seconds(len(g)) for g in populations(runs)) \
      + eval_seconds * len(runs)


def fit(runs: Sequence[Run], seconds_left: float, step_seconds: Callable[[int], float],
        eval_seconds: float, compile_seconds: float) -> list[Run]:
  """The longest prefix of ``runs`` whose ``cost`` fits ``seconds_left``
  (priority order is kept: a run that does not fit ends the plan)."""
  chosen: list[Run] = []
  for r in runs:
    if cost([*chosen, r], step_seconds, eval_seconds, compile_seconds) > seconds_left:
      break
    chosen.append(r)
  return chosen


# ------------------------------------------------------------------ rows

METRICS = ("mig", "mig_with_shape", "tc", "mi", "dim_kl", "log_px", "kl", "active_latents")
ROW_COLUMNS = ("experiment", "method", *KEY_FIELDS, "steps", "frozen_at_step", *METRICS,
               "train_seconds", "eval_seconds", "device", "date", "job", "eval_error")


def result_row(r: Run, result: Mapping[str, Any], **info: Any) -> dict[str, Any]:
  """One results.csv row: the run's key, ``result`` (``population.evaluate_member``:
  its true step count, the metrics or ``eval_error``, ``frozen_at_step``) and
  ``info`` (train_seconds, eval_seconds, device, date, job)."""
  row = {"experiment": r.experiment, "method": r.method, **dict(r.key), "steps": result["step"],
         "frozen_at_step": result.get("frozen_at_step") or "",
         "eval_error": result.get("eval_error", "")}
  row.update({m: result.get(m, "") for m in METRICS})
  row.update(info)
  unknown = sorted(set(row) - set(ROW_COLUMNS))
  if unknown:
    raise ValueError(f"unknown row fields {unknown}")
  return {c: row.get(c, "") for c in ROW_COLUMNS}
