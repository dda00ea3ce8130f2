"""Train a β-TCVAE (or β-VAE).

  python train.py --config configs/default.py --workdir workdirs/default
  python train.py --config configs/default.py --config.objective.beta=4 --workdir ...

Resumes from the latest checkpoint in --workdir (a rerun may raise
--config.num_train_steps; any other change needs --allow_config_change).
A finished run's rerun says so and keeps its eval.json (--reevaluate
computes it again).
Ctrl-C or SIGTERM saves a checkpoint at the current step and exits 130.
A bad config, flag or input exits 2 with one line on stderr.
"""

import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from betatc_jax import host_memory

host_memory.retain_freed_memory()  # before JAX starts its threads: no page faults per step

from betatc_jax import checkpointing, cli, loop, run  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and images.")
flags.DEFINE_bool("allow_config_change", False,
                  "Continue a workdir's run with a changed config (recorded in metrics.jsonl).")
flags.DEFINE_bool("reevaluate", False,
                  "Evaluate again even when eval.json already holds the final step.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
  """absl's flag parsing with its errors (and config-override errors such as
  a misspelt key) as one line and exit 2."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    cli.fail(e)


def config_from_flags():
  """``FLAGS.config``; a config file that did not load exits 2 with one line."""
  config = FLAGS.config        # a stand-in that raises on use when the file failed to load
  if not isinstance(config, ml_collections.ConfigDict):
    cli.fail(cli.config_file_error(config_flags.get_config_filename(FLAGS["config"])))
  return config


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # keep Orbax's INFO logs out of the progress bar
    logging.set_verbosity(logging.WARNING)
  config = config_from_flags()
  try:
    run.train_and_evaluate(config, FLAGS.workdir,
                                  allow_config_change=FLAGS.allow_config_change,
                                  reevaluate=FLAGS.reevaluate)
  except loop.TrainingInterrupted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(cli.INTERRUPTED)
  except (ValueError, OSError, checkpointing.CheckpointError) as e:   # OSError: a missing file
    cli.fail(e)
  except loop.NonFiniteLossError as e:
    cli.fail(e, code=cli.NON_FINITE)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
