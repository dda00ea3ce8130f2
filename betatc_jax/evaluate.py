"""Evaluate a trained run: ELBO decomposition, MIG (two estimators), and the field's other metrics.

  .venv/bin/python -m betatc_jax.evaluate --workdir DIR [--no_progress]

Loads ``DIR/config.json`` and the latest checkpoint, encodes the whole
training dataset, and writes ``DIR/eval.json``, ``DIR/latent_vs_factor.png``
and ``DIR/traversals.png``; prints a short table. Also runs at the end of
training (``config.eval.at_end``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
import time
from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from betatc_jax import checkpointing, cli, logging_utils, losses, metrics, plotting, state
from betatc_jax import config as config_lib
from betatc_jax.data import dataset_from_config
from betatc_jax.data.ground_truth import GroundTruthDataset
from betatc_jax.metrics import suite
from betatc_jax.metrics.suite import (OTHER_METRIC_GROUPS, OTHER_METRICS,  # noqa: F401
                                     metric_groups)
from betatc_jax.metrics.unsupervised import UNSUPERVISED_SCORES

ACTIVE_KL = 0.1    # nats: latents with a smaller mean KL(q(z_j|x) ‖ p(z_j)) count as collapsed


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config a training workdir was run with.

  Raises:
    FileNotFoundError: no such workdir, or no config.json in it.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"No workdir {workdir}.")
  if not (workdir / "config.json").is_file():
    raise FileNotFoundError(f"{workdir} has no config.json: is it a betatc_jax training workdir?")
  saved = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  config = config_lib.with_defaults(saved)       # keys added since the run take their defaults
  config_lib.validate_config(config)
  return config


def restore_params(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                   image_shape: tuple[int, int, int]) -> tuple[int, Any]:
  """(step, params) of the latest checkpoint in ``workdir``.

  Raises:
    FileNotFoundError: no checkpoint.
    checkpointing.CheckpointError: a checkpoint that cannot be restored.
  """
  workdir = pathlib.Path(workdir)
  target = jax.eval_shape(lambda: state.checkpoint_tree(state.create_train_state(
      config, jax.random.key(0), image_shape, config.batch_size), jax.random.key(0)))
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
  try:
    step, restored, _ = checkpointing.restore_latest(manager, target,
                                                     legacy_names=state.LEGACY_NAMES)
  finally:
    manager.close()
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir / 'checkpoints'}: train first.")
  return step, restored["params"]


@functools.lru_cache(maxsize=8)
def _jit_encoder(model):
  """One compiled encoder per model (params are an argument, so a population's
  members share it)."""
  return jax.jit(lambda params, batch: model.apply(
      {"params": params}, batch.astype(jnp.float32) / 255.0, method="encode"))


def encode_dataset(model, params, images: np.ndarray, batch_size: int = 1024
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Posterior (mu, logvar) of every image: uint8 [N, H, W, C] -> 2 × [N, D]."""
  encode = _jit_encoder(model)

  mus, logvars = [], []
  for start in range(0, len(images), batch_size):
    batch = np.asarray(images[start:start + batch_size])
    n = len(batch)
    if n < batch_size:  # pad to one compiled shape
      batch = np.concatenate([batch, np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)])
    mu, logvar = encode(params, batch)
    mus.append(np.asarray(mu)[:n])
    logvars.append(np.asarray(logvar)[:n])
  return np.concatenate(mus), np.concatenate(logvars)


def evaluate_params(config: ml_collections.ConfigDict, params, dataset: GroundTruthDataset, *,
                    step: int, workdir: pathlib.Path | None = None,
                    other_metrics: bool | Collection[str] = True, progress: bool = False,
                    extra: dict[str, Any] | None = None, density: str = "grid"
                    ) -> dict[str, Any]:
  """All metrics of ``params`` on ``dataset``; writes eval.json and plots if
  ``workdir`` is given. ``other_metrics``: True computes the
  ``metrics.suite.DEFAULT_METRIC_GROUPS`` (FactorVAE, DCI, SAP, modularity
  and explicitness, β-VAE score, the unsupervised scores, IRS: ~30 s on 2 CPU
  cores), False only the paper's (MIG and the ELBO decomposition), and a
  collection of ``OTHER_METRIC_GROUPS`` names those groups (the downstream
  tasks, fairness and DCI-ES only by name); the metrics not computed are
  None. ``phase_seconds`` holds each phase's wall time (encoding, the ELBO
  decomposition, both MIGs, each metric group, the plots). ``progress``
  shows a bar over the phases. ``extra`` entries (e.g. a population's UDR)
  join the result and eval.json. ``density``: how MIG and the decomposition
  take the per-latent mixture densities, "grid" or "exact" (``metrics.mig``).

  A dataset without ground-truth factors (your own images) gets the ELBO
  decomposition, log p(x|z), the per-latent KL and the unsupervised scores
  (``metrics.unsupervised``); the supervised metrics
  are None, listed under ``not_applicable``, and the traversal rows are
  sorted by KL (most informative latent first).
  """
  groups = metric_groups(other_metrics)               # a bad name fails before any work
  if dataset.num_factors == 0:
    return _evaluate_without_factors(config, params, dataset, step=step, workdir=workdir,
                                     extra=extra)
  model = state.make_model(config, dataset.observation_shape)
  key = jax.random.key(config.seed + 7)
  keys = jax.random.split(key, 3)
  rng = np.random.default_rng(config.seed + 7)
  num_samples = config.eval.num_samples

  phases = logging_utils.PhaseBar(
      ["encoding, ELBO decomposition", "MIG", "other metrics", "plots"], enabled=progress)
  seconds: dict[str, float] = {}
  mu, logvar, unsupervised = _unsupervised_metrics(model, params, dataset, keys[0], num_samples,
                                                   config.objective.likelihood, seconds, density)
  decomposition, log_px, kl_per_dim = (unsupervised[k] for k in ("decomposition", "log_px",
                                                                 "kl_per_dim"))
  phases.next()
  exclude = (0,) if config.dataset.name in ("dsprites", "tfds:dsprites") else ()
  with _timed(seconds, "mig"):
    mig = metrics.mig(mu, logvar, dataset.factors, dataset.factor_sizes, key=keys[1],
                      num_samples=num_samples, exclude=exclude, density=density)
  with _timed(seconds, "mig_histogram"):
    hist = metrics.mig_histogram(mu, dataset.factors, exclude=exclude)
  phases.next()
  others, group_seconds = suite.timed_other_metrics(mu, dataset, rng, groups)
  seconds.update(group_seconds)
  phases.next()

  result = {
      "step": int(step),
      "mig": mig["mig"],
      "mig_with_shape": float(np.nanmean(mig["mig_per_factor"])),
      "mig_per_factor": dict(zip(dataset.factor_names, map(float, mig["mig_per_factor"]))),
      "mig_excluded_factors": [dataset.factor_names[k] for k in exclude],
      "mig_histogram": hist["mig"],
      "mutual_info": np.round(mig["mutual_info"], 4).tolist(),
      "log_px": log_px,
      "elbo": log_px - decomposition["kl"],
      **{k: decomposition[k] for k in ("mi", "tc", "dim_kl", "kl")},
      "kl_per_dim": np.round(kl_per_dim, 4).tolist(),
      "active_latents": int(np.sum(kl_per_dim > ACTIVE_KL)),
      "density_max_error": max(mig["density_max_error"], decomposition["density_max_error"]),
      **others,
      "num_points": len(dataset),
      "num_samples": num_samples,
      **(extra or {}),
  }

  def plots(out: pathlib.Path) -> None:
    plotting.save_latent_vs_factor(out / "latent_vs_factor.png", mu, dataset,
                                   np.flatnonzero(kl_per_dim > ACTIVE_KL))
    plotting.save_traversals(out / "traversals.png", model, params, dataset, config,
                             kl_per_dim=kl_per_dim)

  _finish(result, seconds, workdir, plots)
  phases.close()
  return result


def _finish(result: dict[str, Any], seconds: dict[str, float],
            workdir: str | pathlib.Path | None, plots) -> None:
  """With a ``workdir``: ``plots(workdir)`` (timed as ``plots``), then
  eval.json. ``result`` gets ``phase_seconds`` either way."""
  if workdir is not None:
    with _timed(seconds, "plots"):
      plots(pathlib.Path(workdir))
  result["phase_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
  if workdir is not None:
    (pathlib.Path(workdir) / "eval.json").write_text(json.dumps(result, indent=2))


@contextlib.contextmanager
def _timed(seconds: dict[str, float], phase: str):
  """Adds the wall time of the ``with`` block to ``seconds[phase]``."""
  start = time.perf_counter()
  try:
    yield
  finally:
    seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start


SUPERVISED = ("mig", "mig_with_shape", "mig_histogram") + tuple(
    k for k in OTHER_METRICS if k not in UNSUPERVISED_SCORES)


def _unsupervised_metrics(model, params, dataset: GroundTruthDataset, key: jax.Array,
                          num_samples: int, likelihood: str, seconds: dict[str, float],
                          density: str = "grid") -> tuple[np.ndarray, np.ndarray, dict]:
  """Posteriors of every image, the ELBO decomposition, log p(x|z) on its
  sampled points and the per-latent KL: (mu, logvar, {...}); the phases'
  wall times are added to ``seconds`` (``encoding``, ``elbo_decomposition``)."""
  with _timed(seconds, "encoding"):
    mu, logvar = encode_dataset(model, params, dataset.images)
  with _timed(seconds, "elbo_decomposition"):
    decomposition = metrics.elbo_decomposition(mu, logvar, key=key, num_samples=num_samples,
                                               density=density)
    x = jnp.asarray(dataset.images[decomposition["rows"]], jnp.float32) / 255.0
    decoded = model.apply({"params": params}, jnp.asarray(decomposition["z"]), method="decode")
    log_px = -float(jnp.mean(losses.reconstruction_nll(x, decoded, likelihood)))
  kl_per_dim = 0.5 * np.mean(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=0)
  return mu, logvar, {"decomposition": decomposition, "log_px": log_px, "kl_per_dim": kl_per_dim}


def _evaluate_without_factors(config, params, dataset: GroundTruthDataset, *, step: int,
                              workdir: pathlib.Path | None,
                              extra: dict[str, Any] | None = None) -> dict[str, Any]:
  model = state.make_model(config, dataset.observation_shape)
  key = jax.random.split(jax.random.key(config.seed + 7), 3)[0]
  seconds: dict[str, float] = {}
  mu, _, u = _unsupervised_metrics(model, params, dataset, key, config.eval.num_samples,
                                   config.objective.likelihood, seconds)
  decomposition, kl_per_dim = u["decomposition"], u["kl_per_dim"]
  scores, group_seconds = suite.timed_other_metrics(
      mu, dataset, np.random.default_rng(config.seed + 7), ("unsupervised",))
  seconds.update(group_seconds)
  result = {
      "step": int(step),
      "log_px": u["log_px"],
      "elbo": u["log_px"] - decomposition["kl"],
      **{k: decomposition[k] for k in ("mi", "tc", "dim_kl", "kl")},
      "kl_per_dim": np.round(kl_per_dim, 4).tolist(),
      "active_latents": int(np.sum(kl_per_dim > ACTIVE_KL)),
      "density_max_error": decomposition["density_max_error"],
      **dict.fromkeys(SUPERVISED),
      **{k: scores[k] for k in UNSUPERVISED_SCORES},
      "not_applicable": {"metrics": list(SUPERVISED),
                         "reason": f"dataset {dataset.name!r} has no ground-truth factors"},
      "num_points": len(dataset),
      "num_samples": config.eval.num_samples,
      **(extra or {}),
  }
  _finish(result, seconds, workdir, lambda out: plotting.save_traversals(
      out / "traversals.png", model, params, dataset, config,
      latent_order=np.argsort(-kl_per_dim, kind="stable"), kl_per_dim=kl_per_dim))
  return result


UDR_IMAGES = 1_000   # disentanglement_lib's num_data_points


def udr_of_runs(configs: list[ml_collections.ConfigDict], params: list[Any],
                dataset: GroundTruthDataset, num_images: int = UDR_IMAGES
                ) -> dict[str, np.ndarray]:
  """UDR (``metrics.udr``) of M runs of one model on ``dataset``, with
  disentanglement_lib's choices: each run's posterior means of the same
  ``num_images`` images (drawn once from ``default_rng(0)``, so every call
  compares on the same ones) and each run's mean per-latent KL on them.

  Args:
    configs, params: the runs' configs (one model) and parameters, M >= 2.
    dataset: the images.
    num_images: N (at most the dataset's size).

  Returns:
    ``udr`` [M] (the Lasso similarity, disentanglement_lib's default) and
    ``udr_spearman`` [M]; NaN for a run whose codes are not finite (a
    diverged run), which the others are compared without, and for every run
    when fewer than two remain.
  """
  from betatc_jax.metrics import udr
  rows = np.sort(np.random.default_rng(0).choice(len(dataset), min(num_images, len(dataset)),
                                                 replace=False))
  images = dataset.images[rows]
  codes, kls = [], []
  for config, p in zip(configs, params):
    mu, logvar = encode_dataset(state.make_model(config, dataset.observation_shape), p,
                                images, batch_size=len(images))
    codes.append(mu)
    kls.append(0.5 * np.mean(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=0))
  finite = [k for k in range(len(codes)) if np.isfinite(codes[k]).all() and
            np.isfinite(kls[k]).all()]
  out = {name: np.full(len(codes), np.nan) for name in ("udr", "udr_spearman")}
  if len(finite) >= 2:
    for name, correlation in (("udr", "lasso"), ("udr_spearman", "spearman")):
      out[name][finite] = udr.udr([codes[k] for k in finite], [kls[k] for k in finite],
                                  correlation=correlation)["scores"]
  return out


def format_table(result: dict[str, Any]) -> str:
  rows = [("step", result["step"]), ("MIG (paper)", result["mig"]),
          ("MIG with shape", result["mig_with_shape"]), ("MIG (histogram)", result["mig_histogram"]),
          ("FactorVAE score", result["factorvae_score"]),
          ("DCI disentanglement", result["dci_disentanglement"]),
          ("SAP score", result.get("sap_score")),
          ("SAP (continuous)", result.get("sap_score_continuous")),
          ("IRS", result.get("irs")),
          ("downstream acc. 10k", result.get("downstream_accuracy_10000")),
          ("strong gen. gap", result.get("strong_generalization_gap")),
          ("fairness (mean)", result.get("fairness")),
          ("DCI-ES explicitness", result.get("dci_es_explicitness")),
          ("DCI-ES size", result.get("dci_es_size")), ("modularity", result.get("modularity")),
          ("explicitness", result.get("explicitness")),
          ("β-VAE score", result.get("beta_vae_score")),
          ("Gaussian TC of means", result.get("gaussian_total_correlation")),
          ("Wasserstein dep./tr C", result.get("gaussian_wasserstein_correlation_norm")),
          ("MI between codes", result.get("mutual_info_score")),
          ("log p(x|z)", result["log_px"]), ("index-code MI", result["mi"]),
          ("total correlation", result["tc"]), ("dimension-wise KL", result["dim_kl"]),
          ("KL (analytic)", result["kl"]), ("active latents", result["active_latents"]),
          ("UDR (lasso)", result.get("udr")), ("UDR (spearman)", result.get("udr_spearman"))]
  rows = [(name, value) for name, value in rows if value is not None]
  if result.get("not_applicable"):
    rows.insert(1, ("supervised metrics", "n/a: no factors"))
  return "\n".join(f"{name:<22}{value:>10.4f}" if isinstance(value, float) else
                   f"{name:<22}{value:>10}" for name, value in rows)


def evaluate_workdir(workdir: str | pathlib.Path, progress: bool = False,
                     other_metrics: bool | Collection[str] = True) -> dict[str, Any]:
  """Evaluates the latest checkpoint of a training workdir (see module
  docstring); ``progress`` prints what is evaluated and shows the phase bar;
  ``other_metrics`` as ``evaluate_params``'."""
  groups = metric_groups(other_metrics)
  config = load_config(workdir)
  dataset = dataset_from_config(config)
  step, params = restore_params(config, workdir, dataset.observation_shape)
  if progress:
    print(f"evaluating step {step} of {workdir} on {len(dataset):,} images "
          f"(S = {config.eval.num_samples:,})", flush=True)
  return evaluate_params(config, params, dataset, step=step, workdir=pathlib.Path(workdir),
                         progress=progress, other_metrics=groups)


def command(workdir: str, progress: bool = True, metrics_names: str = "") -> dict[str, Any]:
  """``evaluate_workdir`` with the command line's errors: one line on
  stderr and exit 2 for a missing workdir or checkpoint or a bad config; the
  table printed. ``metrics_names``: comma-separated ``OTHER_METRIC_GROUPS``
  ("" for the default ones)."""
  from betatc_jax import loop
  names = cli.comma_names(metrics_names)
  result = cli.run_command(lambda: evaluate_workdir(workdir, progress=progress,
                                                    other_metrics=names or True),
                           loop.TrainingInterrupted, loop.NonFiniteLossError,
                           (ValueError, checkpointing.CheckpointError))
  print(format_table(result))
  return result


def main(argv: list[str]) -> None:
  from absl import flags
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  command(flags.FLAGS.workdir, progress=not flags.FLAGS.no_progress,
          metrics_names=flags.FLAGS.metrics)


if __name__ == "__main__":
  from absl import app, flags

  from betatc_jax import host_memory
  host_memory.retain_freed_memory()
  flags.DEFINE_string("workdir", None, "A training workdir.", required=True)
  flags.DEFINE_bool("no_progress", False, "No phase bar.")
  flags.DEFINE_string("metrics", "", "Comma-separated metric groups beyond MIG and the ELBO "
                      "terms (metrics.suite.OTHER_METRIC_GROUPS); default: all but downstream, "
                      "strong_downstream, fairness and dci_es.")
  app.run(main, flags_parser=cli.parse_flags)
