"""Flax linen VAEs: the seed's conv net, the paper's MLP and the paper's conv net.

Images are NHWC floats. Every encoder's last layer has 2·D outputs, read as
``(mu, s)`` (first and second half), each [B, D]; ``VAE.encode`` turns s into
the log variance: s itself (``posterior_scale="log_var"``, the default) or
2·s (``"log_sigma"``, the official β-TCVAE code's (μ, log σ) head);
every decoder maps z: [B, D] to an image-shaped output: logits for a
Bernoulli likelihood, or (``output_activation="tanh"``, the seed) a mean in
[−1, 1] for a Gaussian one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from betatc_jax import checks
from betatc_jax.layers import CONV_IMPLS, Conv2d, ConvImpl, ConvTranspose2d, Dense
from betatc_jax.losses import LOGIT_LIKELIHOODS

Arch = Literal["seed_conv", "mlp", "conv"]
ARCHS: tuple[str, ...] = ("seed_conv", "mlp", "conv")
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("none", "tanh")
PARAM_INITS: tuple[str, ...] = ("flax", "torch")
POSTERIOR_SCALES: tuple[str, ...] = ("log_var", "log_sigma")


class SeedConvEncoder(nn.Module):
  """The seed's encoder: 4 × [Conv(k4, s2, p1), LeakyReLU], fc 256, fc_mu, fc_var.

  x: [B, 64, 64, C] -> (mu, logvar): [B, D]. The flatten is NHWC; weights
  loaded from PyTorch (NCHW flatten) are permuted by ``torch_compat``.
  """
  latent_dim: int
  hidden_dims: Sequence[int] = (32, 32, 32, 32)
  conv_impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i, h in enumerate(self.hidden_dims):
      x = Conv2d(h, 4, 2, 1, impl=self.conv_impl, name=f"conv_{i}")(x)
      x = nn.leaky_relu(x, 0.01)
    x = x.reshape(x.shape[0], -1)
    x = Dense(256, self.conv_impl, name="fc")(x)
    return (Dense(self.latent_dim, self.conv_impl, name="fc_mu")(x),
            Dense(self.latent_dim, self.conv_impl, name="fc_var")(x))


class SeedConvDecoder(nn.Module):
  """The seed's decoder: Linear(D, 16·h) -> 4×4×h, 3 × [ConvT(k3, s2, p1, op1),
  LeakyReLU], ConvT(k3, s2, p1, op1), LeakyReLU, Conv(k3, p1) to C channels.

  z: [B, D] -> [B, 64, 64, C] (before the output activation).
  """
  out_channels: int
  hidden_dims: Sequence[int] = (32, 32, 32, 32)
  conv_impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    dims = list(reversed(self.hidden_dims))
    x = Dense(dims[0] * 16, self.conv_impl, name="decoder_input")(z)
    x = x.reshape(z.shape[0], 4, 4, dims[0])
    for i in range(len(dims) - 1):
      x = ConvTranspose2d(dims[i + 1], 3, 2, 1, 1, impl=self.conv_impl, name=f"deconv_{i}")(x)
      x = nn.leaky_relu(x, 0.01)
    x = ConvTranspose2d(dims[-1], 3, 2, 1, 1, impl=self.conv_impl, name="final_deconv")(x)
    x = nn.leaky_relu(x, 0.01)
    return Conv2d(self.out_channels, 3, 1, 1, impl=self.conv_impl, name="final_conv")(x)


class MLPEncoder(nn.Module):
  """The paper's dSprites encoder: H·W·C-1200-1200-2D, ReLU."""
  latent_dim: int
  hidden: int = 1200
  impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(Dense(self.hidden, self.impl, name="fc_0")(x))
    x = nn.relu(Dense(self.hidden, self.impl, name="fc_1")(x))
    out = Dense(2 * self.latent_dim, self.impl, name="fc_out")(x)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]


class MLPDecoder(nn.Module):
  """The paper's dSprites decoder: D-1200-1200-1200-H·W·C, tanh hidden layers."""
  image_shape: tuple[int, int, int]
  hidden: int = 1200
  impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    x = z
    for i in range(3):
      x = jnp.tanh(Dense(self.hidden, self.impl, name=f"fc_{i}")(x))
    h, w, c = self.image_shape
    return Dense(h * w * c, self.impl, name="fc_out")(x).reshape(z.shape[0], h, w, c)


class ConvEncoder(nn.Module):
  """The paper's 64×64 conv encoder (its BatchNorm layers left out).

  Conv(32, k4, s2, p1) -> 32 -> 64 -> 64 (each k4 s2 p1, ReLU), Conv(512, k4,
  valid) to 1×1, ReLU, Conv(2D, k1).
  """
  latent_dim: int
  conv_impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i, h in enumerate((32, 32, 64, 64)):
      x = nn.relu(Conv2d(h, 4, 2, 1, impl=self.conv_impl, name=f"conv_{i}")(x))
    x = nn.relu(Conv2d(512, 4, impl=self.conv_impl, name="conv_4")(x))
    out = Conv2d(2 * self.latent_dim, 1, impl=self.conv_impl, name="conv_out")(x).reshape(
        x.shape[0], -1)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]


class ConvDecoder(nn.Module):
  """The paper's 64×64 conv decoder (its BatchNorm layers left out).

  Dense 512 (a 1×1 ConvT), ConvT(64, k4) to 4×4, then ConvT(k4, s2, p1) to
  64, 32, 32 and C channels, each doubling the size: 8, 16, 32, 64. ReLU
  between layers.
  """
  out_channels: int
  conv_impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    x = nn.relu(Dense(512, self.conv_impl, name="fc_in")(z)).reshape(z.shape[0], 1, 1, 512)
    x = nn.relu(ConvTranspose2d(64, 4, 1, 0, impl=self.conv_impl, name="deconv_0")(x))
    for i, h in enumerate((64, 32, 32)):
      x = nn.relu(ConvTranspose2d(h, 4, 2, 1, impl=self.conv_impl, name=f"deconv_{i + 1}")(x))
    return ConvTranspose2d(self.out_channels, 4, 2, 1, impl=self.conv_impl, name="deconv_out")(x)


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """z = mu + exp(logvar / 2) · ε, ε ~ N(0, I). mu, logvar: [B, D] -> [B, D]."""
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


class VAE(nn.Module):
  """A Gaussian-posterior VAE with a selectable architecture.

  Attributes:
    arch: ``"seed_conv"``, ``"mlp"`` or ``"conv"``.
    latent_dim: D.
    image_shape: (H, W, C); the conv archs need 64×64.
    output_activation: ``"none"`` (the decoder returns logits, for a
      Bernoulli likelihood) or ``"tanh"`` (the seed's Gaussian mean).
    hidden_dims: the seed_conv channel widths.
    conv_impl: ``"auto"`` (the matmul reformulation on CPU, lax convs
      elsewhere), ``"lax"`` or ``"matmul"``; see ``betatc_jax.layers``. The
      parameters are the same for all three.
    param_init: the initial values ``train_lib.init_params`` draws:
      ``"flax"`` (lecun_normal kernels, zero biases) or ``"torch"``
      (PyTorch's defaults, ``torch_default_init``).
    posterior_scale: what the encoder's second half of outputs s is:
      ``"log_var"`` (logvar = s) or ``"log_sigma"`` (logvar = 2·s, the
      official code's head). The same model family; the gradient reaching
      s, and so Adam's steps, differ.
  """
  arch: Arch = "mlp"
  latent_dim: int = 10
  image_shape: tuple[int, int, int] = (64, 64, 1)
  output_activation: str = "none"
  hidden_dims: tuple[int, ...] = (32, 32, 32, 32)
  conv_impl: ConvImpl = "auto"
  param_init: str = "flax"
  posterior_scale: str = "log_var"

  def setup(self):
    validate_model_settings(self.arch, self.latent_dim, self.image_shape,
                            self.output_activation, self.conv_impl, self.param_init,
                            self.posterior_scale)
    channels = self.image_shape[-1]
    if self.arch == "seed_conv":
      self.encoder = SeedConvEncoder(self.latent_dim, self.hidden_dims, self.conv_impl)
      self.decoder = SeedConvDecoder(channels, self.hidden_dims, self.conv_impl)
    elif self.arch == "mlp":
      self.encoder = MLPEncoder(self.latent_dim, impl=self.conv_impl)
      self.decoder = MLPDecoder(tuple(self.image_shape), impl=self.conv_impl)
    else:
      self.encoder = ConvEncoder(self.latent_dim, self.conv_impl)
      self.decoder = ConvDecoder(channels, self.conv_impl)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: [B, H, W, C] float in [0, 1] -> (mu, logvar), each [B, D].

    Raises:
      ValueError: for another shape, integer images, or (outside jit)
        values outside [0, 1].
    """
    checks.check_images(x, "VAE.encode")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
      raise ValueError(
          f"Expected images of shape [B, {', '.join(map(str, self.image_shape))}] "
          f"(NHWC), got {tuple(x.shape)}.")
    mu, scale = self.encoder(x)
    return mu, 2.0 * scale if self.posterior_scale == "log_sigma" else scale

  def decode(self, z: jax.Array) -> jax.Array:
    """z: [B, D] -> [B, H, W, C] decoder output (logits, or the tanh mean)."""
    with checks.shape_errors_as_value_errors():
      chex.assert_shape(z, (None, self.latent_dim))
    out = self.decoder(z)
    return jnp.tanh(out) if self.output_activation == "tanh" else out

  def __call__(self, x: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """x: [B, H, W, C] -> (decoder_out [B, H, W, C], mu, logvar, z [B, D])."""
    mu, logvar = self.encode(x)
    z = reparameterize(key, mu, logvar)
    return self.decode(z), mu, logvar, z

  def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
    """Decodes z ~ N(0, I): -> [num_samples, H, W, C] decoder outputs."""
    z = jax.random.normal(key, (num_samples, self.latent_dim))
    return self.decode(z)

  def reconstruct(self, x: jax.Array) -> jax.Array:
    """Decodes the posterior mean: x [B, H, W, C] -> [B, H, W, C]."""
    mu, _ = self.encode(x)
    return self.decode(mu)


def validate_model_settings(arch: str, latent_dim: int, image_shape: Sequence[int],
                            output_activation: str, conv_impl: str = "auto",
                            param_init: str = "flax", posterior_scale: str = "log_var") -> None:
  """Raises ValueError for settings no model can be built from."""
  if arch not in ARCHS:
    raise ValueError(f"Unknown model arch {arch!r}; expected one of {ARCHS}.")
  if latent_dim < 1:
    raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}.")
  if arch in ("seed_conv", "conv") and tuple(image_shape[:2]) != (64, 64):
    raise ValueError(f"arch {arch!r} needs 64x64 images, got {tuple(image_shape)}.")
  if output_activation not in OUTPUT_ACTIVATIONS:
    raise ValueError(f"Unknown output_activation {output_activation!r}; "
                     f"expected one of {OUTPUT_ACTIVATIONS}.")
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl {conv_impl!r}; expected one of {CONV_IMPLS}.")
  if param_init not in PARAM_INITS:
    raise ValueError(f"Unknown param_init {param_init!r}; expected one of {PARAM_INITS}.")
  if posterior_scale not in POSTERIOR_SCALES:
    raise ValueError(f"Unknown posterior_scale {posterior_scale!r}; "
                     f"expected one of {POSTERIOR_SCALES}.")


def torch_default_init(params, key: jax.Array):
  """Re-draws every layer's parameters as PyTorch's defaults would (what the
  official β-TCVAE code trains from; flax's are lecun_normal kernels and zero
  biases).

  PyTorch's ``nn.Linear``, ``nn.Conv2d`` and ``nn.ConvTranspose2d`` draw
  weight and bias from U(−b, b) with b = 1/√fan_in (``kaiming_uniform`` with
  a = √5), where fan_in = weight.size(1) · kh · kw. In our layouts (dense
  [in, out], conv [kh, kw, in, out], transposed conv [kh, kw, out, in]) that
  is the product of every kernel axis but the last, for all three: PyTorch's
  transposed convs count their *output* channels, and so does this.

  Args:
    params: a flax params tree whose layers are dicts of ``kernel`` [..., out]
      and ``bias`` [out].
    key: the draws' randomness (one key per layer, by ``fold_in`` of its
      position in the flattened tree).

  Returns:
    A tree of the same structure, shapes and dtypes.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  bound_of = {}
  for path, leaf in leaves:
    if path[-1].key == "kernel":
      bound_of[tuple(p.key for p in path[:-1])] = 1.0 / float(np.prod(leaf.shape[:-1])) ** 0.5
  new = []
  for i, (path, leaf) in enumerate(leaves):
    bound = bound_of[tuple(p.key for p in path[:-1])]
    new.append(jax.random.uniform(jax.random.fold_in(key, i), leaf.shape, leaf.dtype,
                                  -bound, bound))
  return jax.tree_util.tree_unflatten(treedef, new)


def mean_image(decoder_out: jax.Array, likelihood: str) -> jax.Array:
  """The image a decoder output stands for: sigmoid(logits) for the Bernoulli
  likelihoods, the output itself for Gaussian."""
  return jax.nn.sigmoid(decoder_out) if likelihood in LOGIT_LIKELIHOODS else decoder_out
