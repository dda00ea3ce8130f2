"""The paper's β figure at CPU scale: β-VAE and β-TCVAE trained with MWS
(the estimator the authors' code trains with), seeds 0–4, and β-TCVAE with
MSS (the unbiased estimator), seeds 0–2, at β ∈ {1, 2, 4, 6, 8, 10}: 78 runs
of the default's setting (the paper's MLP, Bernoulli, B = 64, the
184,320-image sub-grid), 1,500 steps, evaluated at the end: MIG at
S = 2,000 (shape excluded), each factor's MIG, the ELBO decomposition, UDR
among each cell's seeds, FactorVAE score, DCI, SAP and the β-VAE score
(modularity and explicitness are skipped, as in the results committed
from it).

Command:
  .venv/bin/python -m betatc_jax.sweep --config configs/sweep_cpu_beta.py

Expect: under 2 hours on 2 CPU cores (AMD EPYC): ~1 h of training (each
run at its single-run speed, ~28 ms a step) and up to ~40 minutes of
evaluation (at most ~30 s a run). The populations hold at most 26 runs (~8 GB resident). What
it gave is in results/cpu_beta/ (NOTES.md) and docs/results.md.
"""

from betatc_jax.sweep import grid


def get_config():
  c = grid.get_config()
  c.methods = "beta_vae,betatc_vae_mws,betatc_vae"
  c.steps = 1500
  c.eval_steps = ()
  c.betas = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
  c.seeds = (0, 1, 2, 3, 4)
  c.seeds_for.betatc_vae = (0, 1, 2)
  c.population_size = 26
  c.export = False
  c.skip_metrics = "modularity"
  c.root = "workdirs/cpu_beta"
  c.out = "workdirs/cpu_beta_out"
  c.base.batch_size = 64
  c.base.dataset.subsample = (1, 1, 1, 2, 2)
  c.base.eval.num_samples = 2_000
  c.base.checkpoint_every_steps = 500
  return c
