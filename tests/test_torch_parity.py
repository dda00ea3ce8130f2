"""Parity with the PyTorch reference (the seed), in float32 at rtol 1e-5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from betatc_jax import losses, models, torch_compat
from torch_reference import BetaTCVAE, assert_seed_conv_matches


def _posterior(seed, b, d):
  rng = np.random.default_rng(seed)
  mu = rng.normal(0, 1, (b, d)).astype(np.float32)
  logvar = rng.uniform(-4, 0.5, (b, d)).astype(np.float32)
  z = (mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))).astype(np.float32)
  return z, mu, logvar


@pytest.mark.parametrize("b,d,n", [(2, 1, 2), (8, 3, 100), (64, 10, 737_280), (256, 10, 737_280),
                                   (32, 6, 5_000)])
@pytest.mark.parametrize("training", [False, True])
def test_reference_estimator_matches_torch_loss_function(b, d, n, training):
  torch.manual_seed(0)
  ref = BetaTCVAE(1, d, anneal_steps=7, alpha=1.5, beta=6.0, gamma=0.7)
  ref.train(training)
  z, mu, logvar = _posterior(b * 1000 + d, b, d)
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (b, 1, 8, 8)).astype(np.float32)
  recons = rng.uniform(-1, 1, (b, 1, 8, 8)).astype(np.float32)
  t = lambda a: torch.from_numpy(a)
  want = ref.loss_function(t(recons), t(x), t(mu), t(logvar), t(z), M_N=b / n)

  anneal = losses.linear_anneal(0, 7) if training else 1.0  # the seed's first step
  loss, got = losses.betatc_objective(
      jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(recons.transpose(0, 2, 3, 1)),
      mu, logvar, z, dataset_size=n, anneal=anneal, alpha=1.5, beta=6.0, gamma=0.7,
      estimator="reference", likelihood="gaussian")
  pairs = [(got["mi"], want["MI_Loss"]), (got["tc"], want["TC_Loss"]),
           (got["dim_kl"], want["KLD"]), (got["recon"] * b, want["Reconstruction_Loss"]),
           (loss, want["loss"])]
  for ours, theirs in pairs:
    np.testing.assert_allclose(float(ours), theirs.item(), rtol=1e-5, atol=1e-5)


def test_seed_conv_forward_matches_torch():
  torch.manual_seed(0)
  ref = BetaTCVAE(3, 10).eval()
  params = torch_compat.params_from_torch_state_dict(ref.state_dict())
  model = models.VAE(arch="seed_conv", latent_dim=10, image_shape=(64, 64, 3),
                     output_activation="tanh")
  # The converted tree has exactly the flax model's structure and shapes.
  init = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                        jax.random.key(1))["params"]
  assert jax.tree.map(lambda a: tuple(a.shape), init) == jax.tree.map(np.shape, params)

  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (5, 3, 64, 64)).astype(np.float32)
  z = rng.normal(size=(5, 10)).astype(np.float32)
  assert_seed_conv_matches(ref, params, model, x, z)


def test_state_dict_of_another_model_rejected():
  with pytest.raises(ValueError, match="Not a seed BetaTCVAE state dict"):
    torch_compat.params_from_torch_state_dict({"fc.weight": np.zeros((2, 2))})
  with pytest.raises(ValueError, match="supports arch=.seed_conv. .PyTorch-VAE. and .mlp."):
    torch_compat.params_from_torch_state_dict({}, arch="conv")
  with pytest.raises(ValueError, match="Not an official beta-tcvae MLP VAE"):
    torch_compat.params_from_torch_state_dict({"encoder.fc1.weight": np.zeros((2, 2))},
                                              arch="mlp")
