"""A PyTorch checkpoint as a betatc_jax workdir: AntixK PyTorch-VAE's
BetaTCVAE, or the official β-TCVAE code's MLP VAE.

  python -m betatc_jax.import_torch --checkpoint last.ckpt \
      --config configs/seed_celeba.py --workdir workdirs/imported \
      [--config.dataset.path=/data/celeba/img_align_celeba]
  python -m betatc_jax.import_torch --checkpoint checkpt-0000.pth \
      --config configs/dsprites_paper.py --workdir workdirs/official

The config's ``model.arch`` says which: ``seed_conv`` for PyTorch-VAE,
``mlp`` (with ``model.posterior_scale = "log_sigma"``, as
configs/dsprites_paper.py has) for rtqichen/beta-tcvae's ``vae_quant.py``.
Reads a PyTorch Lightning checkpoint (a dict whose ``state_dict`` keys carry
the ``model.`` prefix, as PyTorch-VAE saves them), the official code's
``{"state_dict": ..., "args": ...}`` or a bare ``state_dict``,
converts the weights (``torch_compat.params_from_torch_state_dict``), checks
them against the config's model, and writes ``WORKDIR/config.json`` and an
Orbax checkpoint at step 0 (the imported params, a fresh Adam state). Then
``python -m betatc_jax.evaluate --workdir WORKDIR``, traversals, and
``train.py --config ... --workdir WORKDIR`` (fine-tuning from the imported
weights) work on it. torch is needed only here (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from betatc_jax import checkpointing, cli, state, torch_compat
from betatc_jax import config as config_lib


def load_state_dict(path: str | pathlib.Path) -> dict[str, Any]:
  """The state dict in a torch checkpoint file (Lightning or bare).

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a torch checkpoint, or no state dict in it.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No checkpoint file {path}.")
  try:
    import torch
  except ImportError as e:  # pragma: no cover - torch is in the test extra
    raise ImportError("Importing a PyTorch checkpoint needs torch: pip install torch") from e
  try:
    # The official code pickles its argparse.Namespace beside the weights.
    with torch.serialization.safe_globals([argparse.Namespace]):
      loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for a file that is not its own
    raise ValueError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:200]}).") from e
  state_dict = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
  if not isinstance(state_dict, Mapping) or not all(
      hasattr(v, "shape") for v in state_dict.values()):
    raise ValueError(f"{path} holds no state dict (a mapping of names to tensors).")
  return dict(state_dict)


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The model's input shape for the config's dataset, without loading it."""
  d = config.dataset
  if d.name == "images":
    return (d.image_size, d.image_size, d.channels)
  if d.name in ("dsprites", "tfds:dsprites"):
    return (64, 64, 1)
  return (64, 64, 3)   # tfds:shapes3d


def check_params(params: Any, config: ml_collections.ConfigDict,
                 shape: tuple[int, int, int]) -> None:
  """Raises ValueError, naming the parameters, when ``params`` do not fit the
  config's model."""
  model = state.make_model(config, shape)
  want = jax.eval_shape(lambda: state.init_params(model, shape, 0)[0])
  flat = lambda tree: {jax.tree_util.keystr(p): tuple(np.shape(v))
                       for p, v in jax.tree_util.tree_leaves_with_path(tree)}
  got, expected = flat(params), flat(want)
  problems = [f"{k}: checkpoint {got.get(k, 'missing')} vs model {v}"
              for k, v in expected.items() if got.get(k) != v]
  problems += [f"{k}: unexpected" for k in got.keys() - expected.keys()]
  if problems:
    raise ValueError("The checkpoint does not fit the config's model "
                     f"({config.model.arch}, D={config.model.latent_dim}, input {shape}): "
                     + "; ".join(sorted(problems)[:8]))


def import_checkpoint(checkpoint: str | pathlib.Path, config: ml_collections.ConfigDict,
                      workdir: str | pathlib.Path) -> pathlib.Path:
  """Converts ``checkpoint`` and writes the workdir (see the module docstring).

  Raises:
    FileNotFoundError, ValueError: a missing or unreadable file, a state dict
      of another architecture (the missing or unexpected keys named), an
      invalid config, or a workdir that already has checkpoints.
  """
  config_lib.validate_config(config)
  arch = config.model.arch
  if arch not in ("seed_conv", "mlp"):
    raise ValueError(f"PyTorch checkpoints are PyTorch-VAE's conv net (model.arch='seed_conv') "
                     f"or the official code's MLP (model.arch='mlp'), not {arch!r}.")
  if arch == "mlp" and config.model.posterior_scale != "log_sigma":
    raise ValueError("The official code's encoder outputs (μ, log σ): use "
                     "model.posterior_scale='log_sigma' (configs/dsprites_paper.py).")
  state_dict = load_state_dict(checkpoint)
  what = "PyTorch-VAE's BetaTCVAE" if arch == "seed_conv" else "the official MLP VAE"
  try:
    params = torch_compat.params_from_torch_state_dict(state_dict, arch=arch)
  except KeyError as e:
    raise ValueError(f"Not a state dict of {what}: missing {e}.") from e
  unexpected = torch_compat.unexpected_keys(state_dict, arch=arch)
  if unexpected:
    raise ValueError(f"Unexpected keys for {what}: {unexpected[:8]}.")
  shape = image_shape(config)
  check_params(params, config, shape)
  workdir = pathlib.Path(workdir)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints)
  if manager.latest_step() is not None:
    raise ValueError(f"{workdir} already has checkpoints; import into a new workdir.")
  params = jax.tree.map(np.asarray, params)
  imported = state.create_train_state(config, None, shape, config.batch_size, params)
  imported = imported.replace(step=np.zeros((), np.int32))   # as a trained run's step is stored
  _, step_key = state.init_params(state.make_model(config, shape), shape, config.seed)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json(indent=2))
  checkpointing.save(manager, 0, state.checkpoint_tree(imported, step_key), force=True)
  manager.wait_until_finished()
  manager.close()
  return workdir


def main(argv: list[str] | None = None) -> int:
  from absl import app, flags
  from ml_collections import config_flags

  flags.DEFINE_string("checkpoint", None, "A PyTorch-VAE (Lightning) or official beta-tcvae "
                      "checkpoint file.")
  flags.DEFINE_string("workdir", None, "The new workdir.")
  config_flags.DEFINE_config_file("config", None, "The config to import into.", lock_config=True)
  flags.mark_flags_as_required(["checkpoint", "config", "workdir"])

  def run(args):
    if len(args) > 1:
      cli.fail(f"unexpected arguments: {args[1:]}")
    config = cli.config_flag()
    path = cli.run_command(
        lambda: import_checkpoint(flags.FLAGS.checkpoint, config, flags.FLAGS.workdir),
        KeyboardInterrupt, FloatingPointError, (ValueError, checkpointing.CheckpointError))
    print(f"imported {flags.FLAGS.checkpoint} into {path} (step 0)")

  app.run(run, argv=argv, flags_parser=cli.parse_flags)
  return 0


if __name__ == "__main__":
  main()
