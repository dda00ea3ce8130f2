"""One run, as ``train.py`` trains it: a population of one in its own
workdir (``betatc_jax.loop``), then its pictures and evaluation.

A rerun in the same workdir continues the run: ``num_train_steps`` may grow;
any other change is refused unless ``allow_config_change``, and an allowed
change is recorded in metrics.jsonl (``{"step", "config_change"}``). A
finished run's rerun says so and keeps its eval.json. With
``selection.members`` > 1 the seed is first chosen by UDR
(``betatc_jax.selection``).
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

from betatc_jax import config as config_lib
from betatc_jax import evaluate, loop, mesh, plotting, selection, state, workdir as wd
from betatc_jax.data import check_holds_a_batch, dataset_from_config


def progress_tc_label(config: ml_collections.ConfigDict) -> str:
  """The bar's name for the TC estimate: only MSS estimates it without bias
  (for log q(z) and every log q(z_j)); a biased one carries an offset."""
  obj = config.objective
  unbiased = {obj.estimator, obj.marginal_estimator or "mss"} == {"mss"}
  return "tc" if unbiased else f"tc({obj.estimator}, offset)"


def train_run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
              allow_config_change: bool = False) -> state.TrainState:
  """Trains one run (resuming from ``workdir/checkpoints``) and writes
  metrics.jsonl, TensorBoard events and PNGs to ``workdir``.

  Raises:
    ValueError: for an invalid config or model/image mismatch, before the
      workdir is touched; ``workdir.ConfigChangedError`` for a workdir of
      another config.
    loop.TrainingInterrupted: on SIGINT/SIGTERM, after the checkpoint.
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
    loop.NonFiniteLossError: when the loss or gradients become non-finite;
      the last good checkpoint stays.
  """
  config_lib.validate_config(config)
  mesh.initialize_from_config(config)
  dataset = dataset_from_config(config)
  check_holds_a_batch(dataset, config.batch_size)
  workdir = pathlib.Path(workdir)
  changes = wd.check_config(workdir, config, allow_config_change)

  def on_start(run):
    if not mesh.is_chief():
      return
    (workdir / "config.json").write_text(config.to_json(indent=2))
    if changes:
      with open(workdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": run.step, "config_change": changes}) + "\n")
    if run.step >= run.total:
      print(f"workdir {workdir} is already trained to step {run.step} of {run.total}",
            flush=True)
    elif run.last_saved:
      print(f"resuming from step {run.step} of {run.total} (workdir {workdir})", flush=True)

  spec = loop.Spec(base=config, configs=[config], names=["run"], dirs=[workdir],
                   workdir=workdir, single=True, dataset=dataset, execution="sequential",
                   progress=bool(config.progress_bar), tc_label=progress_tc_label(config),
                   on_start=on_start)
  states, _ = loop.train(spec)
  trained = state.unstack(states, 0)
  if mesh.is_chief():
    plotting.write_training_pngs(workdir, state.make_model(config, dataset.observation_shape),
                                 jax.device_get(trained.params), dataset, config,
                                 jax.random.key(config.seed + 1))
  return trained


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       allow_config_change: bool = False,
                       reevaluate: bool = False) -> state.TrainState:
  """``train_run``, then (with ``config.eval.at_end``, on the chief process)
  ``evaluate.evaluate_params``: eval.json, plots and a printed table. An
  eval.json of the final step (at the same ``eval.num_samples``) is kept,
  its table printed again, unless ``reevaluate``.

  Raises:
    What ``train_run`` raises.
  """
  extra = None
  if config.selection.members:
    config, extra = _select(config, workdir, allow_config_change)
  trained = train_run(config, workdir, allow_config_change=allow_config_change)
  if not config.eval.at_end or not mesh.is_chief():
    return trained
  step, path = int(trained.step), pathlib.Path(workdir) / "eval.json"
  saved = json.loads(path.read_text()) if path.is_file() else {}
  if (saved.get("step"), saved.get("num_samples")) == (step, config.eval.num_samples) \
      and not reevaluate:
    print(f"{path} already evaluates step {step} (--reevaluate to compute it again):", flush=True)
    print(evaluate.format_table(saved), flush=True)
    return trained
  result = evaluate.evaluate_params(config, jax.device_get(trained.params),
                                    dataset_from_config(config), step=step,
                                    workdir=pathlib.Path(workdir),
                                    progress=bool(config.progress_bar), extra=extra)
  print(evaluate.format_table(result), flush=True)
  return trained


def _select(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
            allow_config_change: bool) -> tuple[ml_collections.ConfigDict, dict]:
  """``selection.select`` (once per workdir): the picked run's config and
  the record for eval.json. A workdir of a run without selection is refused
  first, as ``train_run`` refuses another config."""
  config_lib.validate_config(config)
  if selection.load_record(workdir) is None:
    wd.check_config(pathlib.Path(workdir), config, allow_config_change)
  record = selection.select(config, workdir, dataset_from_config(config),
                            progress=bool(config.progress_bar))
  return selection.picked_config(config, record), {"selection": record}
