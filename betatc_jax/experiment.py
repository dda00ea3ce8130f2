"""Training wired to evaluation: the one module above both.

``train_lib`` (config, state, step, the training loop) and ``evaluate``
(metrics of trained parameters) depend only on the modules below them;
``train.py``, ``betatc_jax.population`` and scripts use this module when a
run should end with its evaluation.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

from betatc_jax import evaluate, selection, train_lib


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       reevaluate: bool = False) -> train_lib.TrainState:
  """``train_lib.train``, then (with ``config.eval.at_end``, on the chief
  process) ``evaluate.evaluate_params``: eval.json, plots and a printed table.
  With ``selection.members`` > 1 the seed is first chosen by UDR
  (``betatc_jax.selection``) and the picked candidate trained on.
  An eval.json of the final step (at the same ``eval.num_samples``) is kept,
  its table printed again, unless ``reevaluate``.

  Raises:
    What ``train_lib.train`` raises.
  """
  extra = None
  if config.selection.members:
    config, extra = _select(config, workdir, allow_config_change)
  state = train_lib.train(config, workdir, allow_config_change=allow_config_change)
  if not config.eval.at_end or jax.process_index() != 0:
    return state
  step, path = int(state.step), pathlib.Path(workdir) / "eval.json"
  saved = json.loads(path.read_text()) if path.is_file() else {}
  if (saved.get("step"), saved.get("num_samples")) == (step, config.eval.num_samples) \
      and not reevaluate:
    print(f"{path} already evaluates step {step} (--reevaluate to compute it again):", flush=True)
    print(evaluate.format_table(saved), flush=True)
    return state
  dataset = train_lib.dataset_from_config(config)
  result = evaluate.evaluate_params(config, jax.device_get(state.params), dataset, step=step,
                                    workdir=pathlib.Path(workdir),
                                    progress=bool(config.progress_bar), extra=extra)
  print(evaluate.format_table(result), flush=True)
  return state


def _select(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool
            ) -> tuple[ml_collections.ConfigDict, dict]:
  """``selection.select`` (once per workdir): the picked run's config and
  the record for eval.json. A workdir of a run without selection is
  refused first, as ``train_lib.train`` refuses another config."""
  train_lib.validate_config(config)
  if selection.load_record(workdir) is None:
    train_lib.check_workdir_config(pathlib.Path(workdir), config, allow_config_change)
  record = selection.select(config, workdir, train_lib.dataset_from_config(config),
                            progress=bool(config.progress_bar))
  return selection.picked_config(config, record), {"selection": record}
