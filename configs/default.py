"""Default: β-TCVAE (MSS, β=6) with the paper's MLP on procedural dSprites, on CPU.

Command:
  python train.py --config configs/default.py --workdir workdirs/default

Expect: about 8 minutes on 2 CPU cores: ~6 min of training (~3.7 steps/s,
~950 img/s; the first run also renders and caches the dataset, ~5 s), then
~2 min of evaluation. The loss falls from ~2,800 to ~118; metrics.jsonl,
TensorBoard events, checkpoints, PNGs and eval.json land in the workdir.
Measured at the end: MIG 0.12 (0.10 with shape), TC 0.75, KL 11.8, log p(x|z)
−117. This is a smoke-scale run: disentanglement needs many more steps (the
paper: 18,000 at batch 2048); see configs/dsprites_paper.py.

The dataset keeps every other position (subsample (1, 1, 1, 2, 2): 184,320
images of the 737,280), so the default loads fast and fits any laptop.
"""

from betatc_jax.default_config import get_config

__all__ = ["get_config"]
