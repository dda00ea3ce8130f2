"""The paper's β figure at CPU scale: β-VAE and β-TCVAE trained with MWS
(the estimator the authors' code trains with), seeds 0–4, and β-TCVAE with
MSS (the unbiased estimator), seeds 0–2, at β ∈ {1, 2, 4, 6, 8, 10}: 78 runs
of the default's setting (the paper's MLP, Bernoulli, B = 64, the
184,320-image sub-grid), 2,500 steps, evaluated every 500 (MIG at
S = 2,000, shape excluded; UDR among each cell's seeds) and, at the end,
with every metric.

Command:
  .venv/bin/python -m betatc_jax.sweep --config configs/sweep_cpu_beta.py

Expect: about 4 hours on 2 CPU cores (AMD EPYC): ~1.5 h of training (each
run at its single-run speed, ~29 ms a step) and ~2.5 h of evaluation. The
populations hold at most 26 runs (~4 GB of states each). What it gave is in
results/cpu_beta/ (NOTES.md) and docs/results.md.
"""

from betatc_jax.sweep import grid


def get_config():
  c = grid.get_config()
  c.methods = "beta_vae,betatc_vae_mws,betatc_vae"
  c.steps = 2500
  c.eval_steps = (500, 1000, 1500, 2000)
  c.betas = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
  c.seeds = (0, 1, 2, 3, 4)
  c.seeds_for.betatc_vae = (0, 1, 2)
  c.population_size = 26
  c.export = False
  c.root = "workdirs/cpu_beta"
  c.out = "workdirs/cpu_beta_out"
  c.base.batch_size = 64
  c.base.dataset.subsample = (1, 1, 1, 2, 2)
  c.base.eval.num_samples = 2_000
  c.base.checkpoint_every_steps = 500
  return c
