"""Default: β-TCVAE (MSS, β=6) with the paper's MLP on procedural dSprites, on CPU.

Command:
  python train.py --config configs/default.py --workdir workdirs/default

Expect: about 7.5 minutes on 2 CPU cores: ~5 min of training (~4.3 steps/s,
~1,100 img/s; the first run also renders and caches the dataset, ~10 s),
then ~2.5 min of evaluation. The loss falls from ~2,800 to ~119;
metrics.jsonl, TensorBoard events, checkpoints, PNGs and eval.json land in
the workdir. Measured at the end: MIG 0.13 (0.11 with shape), TC 0.77, KL
11.4, log p(x|z) −118. This is a smoke-scale run: disentanglement needs many more steps (the
paper: 18,000 at batch 2048); see configs/dsprites_paper.py.

The dataset keeps every other position (subsample (1, 1, 1, 2, 2): 184,320
images of the 737,280), so the default loads fast and fits any laptop.
"""

from betatc_jax.default_config import get_config

__all__ = ["get_config"]
