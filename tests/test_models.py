"""Models: shapes, the VAE surface, input validation, the torch ConvTranspose."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from betatc_jax import models


@pytest.mark.parametrize("arch,shape", [("seed_conv", (64, 64, 3)), ("mlp", (64, 64, 1)),
                                        ("mlp", (8, 8, 1)), ("conv", (64, 64, 1))])
def test_vae_surface_shapes(arch, shape):
  model = models.VAE(arch=arch, latent_dim=5, image_shape=shape)
  x = jnp.zeros((3,) + shape)
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  out, mu, logvar, z = model.apply({"params": params}, x, jax.random.key(2))
  assert out.shape == (3,) + shape and mu.shape == logvar.shape == z.shape == (3, 5)
  assert model.apply({"params": params}, jax.random.key(3), 7, method="sample").shape == (7,) + shape
  recon = model.apply({"params": params}, x, method="reconstruct")
  # reconstruct decodes the posterior mean: the same as decode(mu).
  np.testing.assert_allclose(recon, model.apply({"params": params}, mu, method="decode"), atol=1e-6)


def test_reparameterization_uses_the_key():
  model = models.VAE(arch="mlp", latent_dim=4, image_shape=(8, 8, 1))
  x = jax.random.uniform(jax.random.key(0), (128, 8, 8, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  _, mu, logvar, z1 = model.apply({"params": params}, x, jax.random.key(5))
  _, _, _, z2 = model.apply({"params": params}, x, jax.random.key(5))
  _, _, _, z3 = model.apply({"params": params}, x, jax.random.key(6))
  np.testing.assert_array_equal(z1, z2)
  assert not np.allclose(z1, z3)
  eps = (z1 - mu) / jnp.exp(0.5 * logvar)  # standard normal noise
  assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1) < 0.1


def test_tanh_output_activation_bounds_output():
  model = models.VAE(arch="seed_conv", latent_dim=3, image_shape=(64, 64, 1), output_activation="tanh")
  x = jnp.ones((2, 64, 64, 1))
  params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
  out = model.apply({"params": params}, 50 * jnp.ones((2, 3)), method="decode")
  assert float(jnp.abs(out).max()) <= 1.0


@pytest.mark.parametrize("bad_shape", [(2, 32, 32, 1), (2, 64, 64, 3), (64, 64, 1)])
def test_wrong_image_shape_rejected(bad_shape):
  model = models.VAE(arch="mlp", latent_dim=3, image_shape=(64, 64, 1))
  with pytest.raises(ValueError, match="Expected images of shape"):
    model.init(jax.random.key(0), jnp.zeros(bad_shape), jax.random.key(1))


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="resnet"), "Unknown model arch"),
    (dict(arch="conv", image_shape=(32, 32, 1)), "needs 64x64"),
    (dict(latent_dim=0), "latent_dim"),
    (dict(output_activation="relu"), "output_activation"),
])
def test_bad_model_settings_rejected(kwargs, match):
  model = models.VAE(**{"image_shape": (64, 64, 1), **kwargs})
  shape = model.image_shape
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros((1,) + tuple(shape)), jax.random.key(1))


@pytest.mark.parametrize("k,s,p,op,size", [(3, 2, 1, 1, 4), (4, 2, 1, 0, 8), (4, 1, 0, 0, 1)])
def test_torch_conv_transpose_matches_pytorch(k, s, p, op, size):
  torch.manual_seed(0)
  layer = torch.nn.ConvTranspose2d(5, 7, k, stride=s, padding=p, output_padding=op)
  x = np.random.default_rng(0).normal(size=(2, 5, size, size)).astype(np.float32)
  with torch.no_grad():
    want = layer(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
  flax_layer = models.torch_conv_transpose(7, k, s, p, op)
  params = {"kernel": layer.weight.detach().numpy().transpose(2, 3, 1, 0),
            "bias": layer.bias.detach().numpy()}
  got = flax_layer.apply({"params": params}, x.transpose(0, 2, 3, 1))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)
