"""Models: shapes, the VAE surface, input validation, PyTorch-semantics convs
(both implementations)."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from betatc_jax import state as state_lib
from betatc_jax import layers, models


@pytest.mark.parametrize("arch,shape", [("seed_conv", (64, 64, 3)), ("mlp", (64, 64, 1)),
                                        ("mlp", (8, 8, 1)), ("conv", (64, 64, 1))])
def test_vae_surface_shapes(arch, shape):
  model = models.VAE(arch=arch, latent_dim=5, image_shape=shape)
  x = jax.random.uniform(jax.random.key(4), (3,) + shape)
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]

  def apply(method, *args, **static):
    return jax.jit(functools.partial(model.apply, method=method, **static))({"params": params}, *args)

  out, mu, logvar, z = apply("__call__", x, jax.random.key(2))
  assert out.shape == (3,) + shape and mu.shape == logvar.shape == z.shape == (3, 5)
  assert apply("sample", jax.random.key(3), num_samples=7).shape == (7,) + shape
  # reconstruct decodes the posterior mean: the same as decode(mu).
  np.testing.assert_allclose(apply("reconstruct", x), apply("decode", mu), atol=1e-5)


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
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]
  out = jax.jit(functools.partial(model.apply, method="decode"))({"params": params},
                                                                 50 * jnp.ones((2, 3)))
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
    (dict(arch="seed_conv", conv_impl="fft"), "conv_impl"),
    (dict(param_init="xavier"), "param_init"),
])
def test_bad_model_settings_rejected(kwargs, match):
  model = models.VAE(**{"image_shape": (64, 64, 1), **kwargs})
  shape = model.image_shape
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), jnp.zeros((1,) + tuple(shape)), jax.random.key(1))


@pytest.mark.parametrize("impl", ["lax", "matmul"])
@pytest.mark.parametrize("k,s,p,op,size", [(3, 2, 1, 1, 4), (4, 2, 1, 0, 8), (4, 1, 0, 0, 1),
                                           (5, 3, 2, 2, 3), (4, 3, 1, 0, 5)])
def test_conv_transpose_matches_pytorch(k, s, p, op, size, impl):
  """Both implementations, incl. a stride-3 phase split and (4, 3, 1, 0: output
  size 14, not a multiple of 3) the matmul path's fallback to lax."""
  torch.manual_seed(0)
  layer = torch.nn.ConvTranspose2d(5, 7, k, stride=s, padding=p, output_padding=op)
  x = np.random.default_rng(0).normal(size=(2, 5, size, size)).astype(np.float32)
  with torch.no_grad():
    want = layer(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
  flax_layer = layers.ConvTranspose2d(7, k, s, p, op, impl=impl)
  params = {"kernel": layer.weight.detach().numpy().transpose(2, 3, 1, 0),
            "bias": layer.bias.detach().numpy()}
  got = flax_layer.apply({"params": params}, x.transpose(0, 2, 3, 1))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("impl", ["lax", "matmul"])
@pytest.mark.parametrize("k,s,p,size", [(4, 2, 1, 16), (3, 1, 1, 9), (4, 1, 0, 4), (1, 1, 0, 3),
                                        (5, 3, 2, 11), (3, 2, 0, 9)])
def test_conv_matches_pytorch(k, s, p, size, impl):
  torch.manual_seed(0)
  layer = torch.nn.Conv2d(5, 7, k, stride=s, padding=p)
  x = np.random.default_rng(0).normal(size=(2, 5, size, size)).astype(np.float32)
  with torch.no_grad():
    want = layer(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
  params = {"kernel": layer.weight.detach().numpy().transpose(2, 3, 1, 0),
            "bias": layer.bias.detach().numpy()}
  got = layers.Conv2d(7, k, s, p, impl=impl).apply({"params": params}, x.transpose(0, 2, 3, 1))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("arch", ["seed_conv", "conv", "mlp"])
def test_impls_share_params_values_and_gradients(arch):
  """The matmul path is an exact reformulation: the same initial params as
  flax's nn.Conv/nn.ConvTranspose/nn.Dense layout, the same outputs and
  gradients."""
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 1))
  key = jax.random.key(1)
  models_by_impl = {impl: models.VAE(arch=arch, conv_impl=impl) for impl in ("lax", "matmul")}
  params = {impl: jax.jit(m.init)(jax.random.key(2), x, key)["params"]
            for impl, m in models_by_impl.items()}
  chex.assert_trees_all_equal(params["lax"], params["matmul"])

  def loss(p, impl):
    out, mu, logvar, _ = models_by_impl[impl].apply({"params": p}, x, key)
    return jnp.mean(out ** 2) + jnp.mean(mu ** 2 + logvar ** 2)

  values = {impl: jax.jit(jax.value_and_grad(loss), static_argnums=1)(params["lax"], impl)
            for impl in ("lax", "matmul")}
  np.testing.assert_allclose(values["matmul"][0], values["lax"][0], rtol=1e-5)
  chex.assert_trees_all_close(values["matmul"][1], values["lax"][1], rtol=1e-3, atol=1e-6)


def test_dense_is_nn_dense_with_the_same_gradients():
  """layers.Dense has nn.Dense's params (same init values) and outputs; the
  hand-written backward of ``layers.matmul`` gives autodiff's gradients, for
  2-D and 4-D inputs."""
  x = jax.random.normal(jax.random.key(0), (6, 33))
  ours = layers.Dense(17, impl="matmul").init(jax.random.key(1), x)
  chex.assert_trees_all_equal(ours, nn.Dense(17).init(jax.random.key(1), x))
  np.testing.assert_allclose(layers.Dense(17, impl="matmul").apply(ours, x),
                             nn.Dense(17).apply(ours, x), rtol=1e-6, atol=1e-6)
  for shape in [(6, 33), (2, 5, 4, 33)]:
    xs = jax.random.normal(jax.random.key(2), shape)
    w = jax.random.normal(jax.random.key(3), (33, 9))
    cotangent = jax.random.normal(jax.random.key(4), shape[:-1] + (9,))
    got = jax.vjp(layers.matmul, xs, w)[1](cotangent)
    want = jax.vjp(jnp.matmul, xs, w)[1](cotangent)
    for g, e in zip(got, want):
      np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    brute = np.asarray(xs, np.float64).reshape(-1, 33).T @ np.asarray(cotangent, np.float64).reshape(-1, 9)
    np.testing.assert_allclose(got[1], brute, rtol=1e-4, atol=1e-4)


def test_auto_conv_impl_is_matmul_on_cpu():
  assert jax.default_backend() == "cpu"
  assert layers.resolve_impl("auto") == "matmul"
  with pytest.raises(ValueError, match="conv_impl"):
    layers.resolve_impl("fft")


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_torch_init_draws_pytorchs_default_ranges(arch):
  """param_init="torch": every kernel and bias uniform on ±1/√fan_in with
  PyTorch's own fan_in of the same layer (for a transposed conv, its output
  channels), and a state_lib.init_params of the same seed is reproducible."""
  model = models.VAE(arch=arch, latent_dim=6, image_shape=(64, 64, 1), param_init="torch")
  init = jax.jit(lambda m, seed: state_lib.init_params(m, (64, 64, 1), seed)[0], static_argnums=0)
  params = init(model, 3)
  chex.assert_trees_all_equal(params, init(model, 3))
  flax_model = models.VAE(arch=arch, latent_dim=6, image_shape=(64, 64, 1))
  chex.assert_trees_all_equal_shapes_and_dtypes(params, jax.eval_shape(init, flax_model, 3))

  def torch_layer(name, kernel):
    if kernel.ndim == 2:
      return torch.nn.Linear(kernel.shape[0], kernel.shape[1])
    k, _, a, b = kernel.shape
    if "deconv" in name:                       # our [kh, kw, out, in]
      return torch.nn.ConvTranspose2d(b, a, k)
    return torch.nn.Conv2d(a, b, k)            # our [kh, kw, in, out]

  layers_seen = 0
  for path, layer in jax.tree_util.tree_flatten_with_path(
      params, is_leaf=lambda t: isinstance(t, dict) and "kernel" in t)[0]:
    name = "/".join(p.key for p in path)
    kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(torch_layer(name, kernel).weight)
    bound = 1 / np.sqrt(fan_in)
    for values in (kernel, bias):
      assert np.abs(values).max() <= bound
    # U(-b, b): std b/√3; with ≥ 20k draws the sample std is within 3%.
    if kernel.size >= 20_000:
      assert abs(kernel.std() / (bound / np.sqrt(3)) - 1) < 0.03, name
      assert abs(kernel.mean()) < 0.02 * bound, name
    layers_seen += 1
  assert layers_seen >= 5
