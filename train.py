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

from absl import app, flags
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


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  config = cli.config_flag()
  cli.run_command(lambda: run.train_and_evaluate(config, FLAGS.workdir,
                                                 allow_config_change=FLAGS.allow_config_change,
                                                 reevaluate=FLAGS.reevaluate),
                  loop.TrainingInterrupted, loop.NonFiniteLossError,
                  (ValueError, checkpointing.CheckpointError))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
