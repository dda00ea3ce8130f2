"""Train a β-TCVAE (or β-VAE).

  python train.py --config configs/default.py --workdir workdirs/default
  python train.py --config configs/default.py --config.objective.beta=4 --workdir ...

Resumes from the latest checkpoint in --workdir.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from betatc_jax import host_memory

host_memory.retain_freed_memory()  # before JAX starts its threads: no page faults per step

from betatc_jax import experiment  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and images.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # keep Orbax's INFO logs out of the progress bar
    logging.set_verbosity(logging.WARNING)
  experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
