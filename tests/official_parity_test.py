"""Step-for-step parity with the official β-TCVAE code (tests/official_reference.py,
a PyTorch port of rtqichen/beta-tcvae's vae_quant.py and lib/dist.py).

From the official model's initial weights (imported with ``torch_compat``),
the same batches and the same posterior noise, ``step_lib.train_step`` with
``configs/dsprites_paper.py`` at B = 64 gives the official step at each of
K = 6 Adam steps, in float32:

  - synced (one ``train_step`` from each official state, so each step is
    compared after one step of rounding, not K): the loss and its terms to
    rtol 2e-5; the gradients, per tensor, to 2e-5 · max |g|; the updated
    parameters to 2e-6 plus what a gradient error of 1e-6 · max |g| can
    change in Adam's step (``torch_training.adam_tolerance``: a gradient
    entry within rounding of 0 may step ±lr either way, as g/(|g| + ε) has
    it). Measured: gradients within 2e-6 · max |g|, parameters within 0.11
    of the bound;
  - free-running (K steps of each from the initial weights alone): the
    losses to rtol 2e-5 at every step.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity test needs torch (the 'test' extra)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from betatc_jax import state as state_lib
from betatc_jax import step as step_lib
from betatc_jax import torch_compat  # noqa: E402
from betatc_jax.data import load_dataset  # noqa: E402
from configs import dsprites_paper  # noqa: E402
from official_reference import OfficialMLPVAE  # noqa: E402
from torch_training import adam_steps, assert_synced_parity, free_steps  # noqa: E402

STEPS, BATCH = 6, 64


@pytest.fixture(scope="module")
def sprites():
  return load_dataset("dsprites", subsample=(1, 2, 4, 4, 4))      # 5,760 images


def to_ours(arrays):
  """Official-layout arrays (parameters or Adam moments) as our params tree."""
  return jax.tree.map(jnp.asarray, torch_compat.params_from_torch_state_dict(arrays, arch="mlp"))


@pytest.mark.parametrize("estimator,dataset_size", [
    ("mws", 5_760), ("mws", 737_280), ("official_mss", 737_280)])
def test_train_step_equals_the_official_step(sprites, estimator, dataset_size):
  torch.manual_seed(0)
  ref = OfficialMLPVAE(z_dim=10, beta=6.0, mss=estimator == "official_mss")
  config = dsprites_paper.get_config()
  config.batch_size, config.objective.estimator = BATCH, estimator
  state0 = state_lib.create_train_state(config, None, (64, 64, 1), dataset_size,
                                        params=to_ours(ref.state_dict()))
  key = jax.random.key(11)
  rng = np.random.default_rng(0)
  batches = [sprites.images[np.sort(rng.choice(len(sprites), BATCH, replace=False))]
             for _ in range(STEPS)]
  # The posterior noise of step t: reparameterize's normal(fold_in(key, t), [B, D]).
  eps = [np.asarray(jax.random.normal(jax.random.fold_in(key, t), (BATCH, 10)))
         for t in range(STEPS)]
  x = [b.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 for b in batches]
  theirs = adam_steps(ref, lambda m, x, e: m.loss(x, dataset_size, e), x, eps, lambda t: 1e-3)
  kept = assert_synced_parity(state0, batches, key, theirs, to_ours)
  np.testing.assert_allclose(free_steps(state0, batches, key), [loss for _, loss in kept],
                             rtol=2e-5)
