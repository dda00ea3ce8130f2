"""Baseline: β-VAE (β=6, analytic KL) with the default's model, data and budget.

Command:
  .venv/bin/python train.py --config configs/beta_vae.py --workdir workdirs/beta_vae

Expect: the same run time as configs/default.py. The logged mi/tc/dim_kl are
the default estimator's (MWS) estimates, for monitoring only (not in the
loss). The final MIG over seeds is in docs/results.md ("The default run on a
CPU").
"""

from configs import default


def get_config():
  config = default.get_config()
  config.objective.name = "beta_vae"
  return config
