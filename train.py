"""Train a β-TCVAE (or β-VAE).

  python train.py --config configs/default.py --workdir workdirs/default
  python train.py --config configs/default.py --config.objective.beta=4 --workdir ...

Resumes from the latest checkpoint in --workdir (a rerun may raise
--config.num_train_steps; any other change needs --allow_config_change).
Ctrl-C or SIGTERM saves a checkpoint at the current step and exits 130.
A bad config, flag or input exits 2 with one line on stderr.
"""

import ast
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from betatc_jax import host_memory

host_memory.retain_freed_memory()  # before JAX starts its threads: no page faults per step

from betatc_jax import checkpointing, experiment, train_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and images.")
flags.DEFINE_bool("allow_config_change", False,
                  "Continue a workdir's run with a changed config (recorded in metrics.jsonl).")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def fail(message: str, code: int = 2):
  """One line on stderr, then exit ``code`` (no traceback)."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def readable(error: Exception) -> str:
  """An exception's message, with a quoted repr (ml_collections' KeyError
  and AttributeError carry one, "Did you mean" included) unquoted."""
  message = str(error.args[0]) if error.args else str(error)
  if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
    try:
      message = ast.literal_eval(message)
    except (ValueError, SyntaxError):
      pass
  return message.replace("\n", " ")


def parse_flags(argv):
  """absl's flag parsing with its errors (and config-override errors such as
  a misspelt key) as one line and exit 2."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    fail(readable(e))


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # keep Orbax's INFO logs out of the progress bar
    logging.set_verbosity(logging.WARNING)
  try:
    experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                  allow_config_change=FLAGS.allow_config_change)
  except train_lib.TrainingInterrupted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(130)
  except (ValueError, OSError, checkpointing.CheckpointError) as e:   # OSError: a missing file
    fail(readable(e))
  except train_lib.NonFiniteLossError as e:
    fail(e, code=1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
