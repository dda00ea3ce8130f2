"""β-VAE against β-TCVAE (MSS) at the paper's scale: the full 737,280-image
grid, B = 2048, 18,000 steps (50 epochs), β ∈ {1, 2, 4, 6, 8, 10}, seeds 0
and 1, evaluated at 2,000, 6,000 and 18,000 steps (MIG at S = 10,000).

Command (a GPU; on 2 CPU cores a single run takes ~9 hours):
  .venv/bin/python -m betatc_jax.sweep --config configs/sweep_paper.py

On an accelerator the runs train as one vmapped population. The GPU job
(benchmarks/gpu/, docs/gpu.md) runs the paper-scale experiments in
10-minute slices instead.
"""

from betatc_jax.sweep import grid


def get_config():
  c = grid.get_config()
  c.steps = 18_000
  c.eval_steps = (2_000, 6_000)
  c.root = "workdirs/sweep_paper"
  c.out = "workdirs/sweep_paper_out"
  c.base.batch_size = 2048
  c.base.dataset.subsample = (1, 1, 1, 1, 1)
  return c
