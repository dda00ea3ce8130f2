"""FactorVAE's discriminator (Kim & Mnih, 2018): its network, the
dimension-wise permutation and the two losses, as pure functions.

The discriminator D tells samples of q(z) from samples of ∏_j q(z_j). It
outputs two logits per z, [real, permuted], and the density-ratio trick
turns them into a TC estimate:

    TC(z) = KL(q(z) ‖ ∏_j q(z_j)) ≈ E_q [log D(z) − log(1 − D(z))]
          = mean_B (logit_real − logit_permuted)

which the VAE minimizes (weight γ; gradients flow through D into z). D is
trained on the same batch: its z (gradients stopped) labelled real, and
``permute_dims`` of it, each latent shuffled across the batch
independently, labelled permuted (cross-entropy, mean of the two halves).
Shuffling within the batch approximates ∏_j q(z_j) with the batch's own
marginals. disentanglement_lib does the same with one batch; the paper
draws a second batch for the permuted samples.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class Discriminator(nn.Module):
  """MLP z [B, D] -> logits [B, 2] (real, permuted): ``num_layers`` hidden
  layers of ``width`` units with leaky ReLU (slope 0.2); the paper: 6 × 1000."""
  num_layers: int = 6
  width: int = 1000

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    if self.num_layers < 1:
      raise ValueError(f"The discriminator needs >= 1 hidden layer, got {self.num_layers}.")
    x = z
    for i in range(self.num_layers):
      x = nn.leaky_relu(nn.Dense(self.width, name=f"fc_{i}")(x), negative_slope=0.2)
    return nn.Dense(2, name="logits")(x)


def permute_dims(z: jax.Array, key: jax.Array) -> jax.Array:
  """z [B, D] with each column permuted across the batch independently:
  samples of the product of the batch's marginals."""
  chex.assert_rank(z, 2)
  keys = jax.random.split(key, z.shape[1])
  columns = jax.vmap(lambda k, col: jax.random.permutation(k, col), in_axes=(0, 1), out_axes=1)
  return columns(keys, z)


def density_ratio_tc(logits: jax.Array) -> jax.Array:
  """The TC estimate mean_B (logit_real − logit_permuted) of logits [B, 2]."""
  chex.assert_shape(logits, (None, 2))
  return jnp.mean(logits[:, 0] - logits[:, 1])


def discriminator_loss(logits_real: jax.Array, logits_permuted: jax.Array) -> jax.Array:
  """Cross-entropy of D: ½ (CE(real logits, class 0) + CE(permuted logits, class 1)),
  each a mean over its batch; logits [B, 2]."""
  chex.assert_equal_shape([logits_real, logits_permuted])
  real = -jnp.mean(jax.nn.log_softmax(logits_real)[:, 0])
  permuted = -jnp.mean(jax.nn.log_softmax(logits_permuted)[:, 1])
  return 0.5 * (real + permuted)


def optimizer(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
  """The discriminator's Adam (the paper: lr 1e-4, β1 0.5, β2 0.9)."""
  return optax.adam(learning_rate, b1=b1, b2=b2)
