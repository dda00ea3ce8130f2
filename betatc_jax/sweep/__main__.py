"""python -m betatc_jax.sweep [--config configs/sweep_X.py] [--config.a.b=v ...]

Trains and evaluates the sweep's grid, then writes its report (the package
docstring). ``--config`` defaults to the default sweep (``grid.get_config``).
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from betatc_jax import host_memory

FLAGS = flags.FLAGS
DEFAULT_CONFIG = str(pathlib.Path(__file__).with_name("default_config.py"))


def _define_config_flag() -> None:
  """``--config``; its default file loads (and reads sys.argv's overrides)
  as it is defined, so a misspelt override fails here, as one line."""
  from betatc_jax import cli
  try:
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Sweep configuration file (configs/sweep_*.py).",
        lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    cli.fail(e)


def sweep(c) -> None:
  """Trains and evaluates ``c``'s grid (unless ``report_only``); process 0
  writes the report."""
  from betatc_jax import mesh
  from betatc_jax.sweep import grid, report, running
  grid.validate(c)
  mesh.initialize_from_config(c.base)              # before any JAX work
  if not c.report_only:
    running.train_and_evaluate(c)
  mesh.barrier("sweep trained")
  if mesh.is_chief():
    report.report(c, " ".join(["python -m betatc_jax.sweep", *sys.argv[1:]]))


def main(argv: list[str]) -> None:
  from betatc_jax import checkpointing, cli, loop
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}")
  sys.stdout.reconfigure(line_buffering=True)      # each line as it comes, redirected or not
  cli.quiet_logs()
  c = cli.config_flag()
  cli.run_command(lambda: sweep(c), loop.TrainingInterrupted, loop.NonFiniteLossError,
                  (ValueError, checkpointing.CheckpointError))


def run() -> None:
  from betatc_jax import cli
  host_memory.retain_freed_memory()                # before JAX starts its threads
  _define_config_flag()
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
