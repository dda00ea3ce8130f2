"""Training wired to evaluation: the one module above both.

``train_lib`` (config, state, step, the training loop) and ``evaluate``
(metrics of trained parameters) depend only on the modules below them;
``train.py``, ``betatc_jax.population`` and scripts use this module when a
run should end with its evaluation.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections

from betatc_jax import evaluate, train_lib


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False) -> train_lib.TrainState:
  """``train_lib.train``, then (with ``config.eval.at_end``, on the chief
  process) ``evaluate.evaluate_params``: eval.json, plots and a printed table.

  Raises:
    What ``train_lib.train`` raises.
  """
  state = train_lib.train(config, workdir, allow_config_change=allow_config_change)
  if config.eval.at_end and jax.process_index() == 0:
    dataset = train_lib.dataset_from_config(config)
    result = evaluate.evaluate_params(config, jax.device_get(state.params), dataset,
                                      step=int(state.step), workdir=pathlib.Path(workdir),
                                      progress=bool(config.progress_bar))
    print(evaluate.format_table(result), flush=True)
  return state
