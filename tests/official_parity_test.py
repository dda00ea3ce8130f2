"""Step-for-step parity with the official β-TCVAE code (tests/official_reference.py,
a PyTorch port of rtqichen/beta-tcvae's vae_quant.py and lib/dist.py).

From the official model's initial weights (imported with ``torch_compat``),
the same batches and the same posterior noise, ``train_lib.train_step`` with
``configs/dsprites_paper.py`` at B = 64 gives, at each of K = 6 Adam steps,
the official loss and its terms, its gradients and its updated parameters,
in float32. Tolerances, and why:

  - loss and terms: rtol 2e-5 (sums of 4,096 pixels and B² densities);
  - gradients: per tensor, max |ours − theirs| <= 1e-4 · max |theirs|;
  - parameters: max |ours − theirs| <= 2e-6 over every tensor after each
    step: Adam moves each entry by ≈ lr · sign(g) = 1e-3 at first, so a
    relative error of the gradient shows up ~1e-3 smaller, except where a
    gradient entry is within rounding of 0, where the two may step in
    opposite directions (counted; at most 1 in 10⁶ entries).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity test needs torch (the 'test' extra)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from betatc_jax import torch_compat, train_lib  # noqa: E402
from betatc_jax.data import load_dataset  # noqa: E402
from configs import dsprites_paper  # noqa: E402
from official_reference import OfficialMLPVAE, train_steps  # noqa: E402

STEPS, BATCH = 6, 64


@pytest.fixture(scope="module")
def sprites():
  return load_dataset("dsprites", subsample=(1, 2, 4, 4, 4))      # 5,760 images


def official_config(estimator):
  config = dsprites_paper.get_config()
  config.batch_size = BATCH
  config.objective.estimator = estimator
  return config


def jax_name(torch_name):
  """Our parameter path of an official parameter, and how to bring ours to its layout."""
  table = {"encoder.fc1": ("encoder", "fc_0"), "encoder.fc2": ("encoder", "fc_1"),
           "encoder.fc3": ("encoder", "fc_out"), "decoder.net.0": ("decoder", "fc_0"),
           "decoder.net.2": ("decoder", "fc_1"), "decoder.net.4": ("decoder", "fc_2"),
           "decoder.net.6": ("decoder", "fc_out")}
  layer, kind = torch_name.rsplit(".", 1)
  return table[layer], "kernel" if kind == "weight" else "bias"


def to_torch_layout(tree, torch_name, latent_dim=10):
  """Our array of ``torch_name`` in the official layout ([out, in], μ/log σ interleaved)."""
  (part, layer), kind = jax_name(torch_name)
  value = np.asarray(tree[part][layer][kind])
  value = value.T if kind == "kernel" else value
  if torch_name.startswith("encoder.fc3"):
    interleaved = np.empty_like(value)
    interleaved[0::2], interleaved[1::2] = value[:latent_dim], value[latent_dim:]
    value = interleaved
  return value


def adam_tolerance(grad, exp_avg_sq, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
  """Per entry: 2e-6, plus the change of Adam's step t that a gradient error
  of 1e-6 · max |g| can make, lr · (1 − β1)/(1 − β1^(t+1)) · δ / (√v̂ + ε),
  with v̂ the official second moment after the step, bias-corrected."""
  delta = 1e-6 * np.max(np.abs(grad))
  vhat = exp_avg_sq / (1 - b2 ** (t + 1))
  return 2e-6 + lr * (1 - b1) / (1 - b1 ** (t + 1)) * delta / (np.sqrt(vhat) + eps)


def to_ours(arrays):
  """Official-layout arrays (name -> array: parameters or Adam moments) as our tree."""
  return jax.tree.map(jnp.asarray, torch_compat.params_from_torch_state_dict(arrays, arch="mlp"))


def run_both(sprites, estimator, dataset_size, seed=0):
  """The official port's K free-running steps, and ours: free-running from the
  same weights, and synced (one ``train_step`` from each official state)."""
  torch.manual_seed(seed)
  ref = OfficialMLPVAE(z_dim=10, beta=6.0, mss=estimator == "official_mss")
  config = official_config(estimator)
  state0 = train_lib.create_train_state(config, None, (64, 64, 1), dataset_size,
                                        params=to_ours(ref.state_dict()))
  key = jax.random.key(seed + 11)
  rng = np.random.default_rng(seed)
  batches = [sprites.images[np.sort(rng.choice(len(sprites), BATCH, replace=False))]
             for _ in range(STEPS)]
  # The posterior noise of step t: reparameterize's normal(fold_in(key, t), [B, D]).
  eps = [np.asarray(jax.random.normal(jax.random.fold_in(key, t), (BATCH, 10)))
         for t in range(STEPS)]
  x = [b.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 for b in batches]
  theirs = train_steps(ref, x, eps, dataset_size)

  step = jax.jit(train_lib.train_step)
  grads_of = jax.jit(lambda s, b, k: train_lib.loss_and_grads(s, *train_lib.step_inputs(s, b, k)))
  free, synced = [], []
  state = state0
  for batch in batches:
    state, metrics = step(state, batch, key)
    free.append(float(metrics["loss"]))
  for t, (batch, official) in enumerate(zip(batches, theirs)):
    before = official["before"]
    adam = state0.opt_state[0]._replace(count=jnp.int32(t), mu=to_ours(before["exp_avg"]),
                                        nu=to_ours(before["exp_avg_sq"]))
    state = state0.replace(step=jnp.int32(t), params=to_ours(before["params"]),
                           opt_state=(adam,) + tuple(state0.opt_state[1:]))
    metrics, _, grads = grads_of(state, batch, key)
    new_state, step_metrics = step(state, batch, key)
    np.testing.assert_allclose(step_metrics["loss"], metrics["loss"], rtol=1e-6)
    synced.append({"metrics": jax.device_get(metrics), "grads": jax.device_get(grads),
                   "params": jax.device_get(new_state.params),
                   "nu": jax.device_get(new_state.opt_state[0].nu)})
  return free, synced, theirs


@pytest.mark.parametrize("estimator,dataset_size", [
    ("mws", 5_760), ("mws", 737_280), ("official_mss", 737_280)])
def test_train_step_equals_the_official_step(sprites, estimator, dataset_size):
  free, synced, theirs = run_both(sprites, estimator, dataset_size)
  for t, (a, b) in enumerate(zip(synced, theirs)):
    np.testing.assert_allclose(a["metrics"]["loss"], b["loss"], rtol=2e-5, err_msg=f"step {t}")
    for term in ("recon", "mi", "tc", "dim_kl"):
      np.testing.assert_allclose(a["metrics"][term], b["terms"][term], rtol=2e-5, atol=2e-4,
                                 err_msg=f"{term} at step {t}")
    for name, grad in b["grads"].items():
      mine = to_torch_layout(a["grads"], name)
      assert np.max(np.abs(mine - grad)) <= 2e-5 * np.max(np.abs(grad)), (name, t)
    for name, grad in b["grads"].items():
      diff = np.abs(to_torch_layout(a["params"], name) - b["params"][name])
      tol = adam_tolerance(grad, b["exp_avg_sq"][name], t)
      assert np.all(diff <= tol), (name, t, float(np.max(diff / tol)))
  np.testing.assert_allclose(free, [b["loss"] for b in theirs], rtol=2e-5)
