"""Every method at CPU scale: β-TCVAE (MSS), β-VAE, FactorVAE, DIP-VAE-I/II
and the annealed VAE, three values of each one's grid (low, middle and high
of disentanglement_lib's), seed 0, 2,000 steps at B = 64 on the
92,160-image sub-grid, every metric at the end (MIG at S = 10,000).

Command:
  .venv/bin/python -m betatc_jax.sweep --config configs/sweep_methods.py

Expect: about 40 minutes on 2 CPU cores (15 runs in one population, the 3
FactorVAE runs in a second). The committed outputs are in results_methods/
and docs/results.md reads them.
"""

from betatc_jax.sweep import grid


def get_config():
  c = grid.get_config()
  c.methods = "betatc_vae,beta_vae,factorvae,dip_vae_i,dip_vae_ii,annealed_vae"
  c.steps = 2000
  c.eval_steps = ()
  c.seeds = (0,)
  c.grids.betatc_vae = (1.0, 4.0, 10.0)
  c.grids.beta_vae = (1.0, 4.0, 16.0)
  c.grids.factorvae = (10.0, 30.0, 100.0)
  c.grids.dip_vae_i = (1.0, 5.0, 50.0)
  c.grids.dip_vae_ii = (1.0, 5.0, 50.0)
  c.grids.annealed_vae = (5.0, 25.0, 100.0)
  c.export = False
  c.root = "workdirs/methods"
  c.out = "workdirs/methods_out"
  c.base.batch_size = 64
  c.base.checkpoint_every_steps = 1000
  return c
