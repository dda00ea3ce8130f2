"""The β-TCVAE and β-VAE objectives as pure functions of arrays.

Imports only jax and chex (through ``estimators``), so the loss can be used in
any JAX training loop.
"""

from __future__ import annotations

from typing import Literal

import chex
import jax
import jax.numpy as jnp

from betatc_jax import estimators

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")


def linear_anneal(step: jax.Array | int, anneal_steps: int) -> jax.Array:
  """Weight of the dimension-wise KL during warm-up: min((step + 1)/T, 1).

  ``step`` counts the updates already applied (0 for the first update), so
  the first update uses 1/T, exactly as the seed's counter (incremented
  before use) does, but as a pure function of the step. ``anneal_steps`` <= 0
  means no warm-up (weight 1).

  Args:
    step: scalar int, the 0-based update index.
    anneal_steps: T, the length of the warm-up.

  Returns:
    A float32 scalar in (0, 1].
  """
  if anneal_steps <= 0:
    return jnp.ones((), jnp.float32)
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum((step + 1.0) / float(anneal_steps), 1.0)


def reconstruction_nll(
    x: jax.Array, decoder_out: jax.Array, likelihood: Likelihood) -> jax.Array:
  """Per-sample −log p(x|z) (up to constants for the Gaussian).

  * ``"bernoulli"``: ``decoder_out`` are logits and x ∈ [0, 1];
    −log p = Σ_pixels BCE(logits, x).
  * ``"gaussian"``: ``decoder_out`` is the mean image;
    −log p = Σ_pixels (out − x)², the seed's summed MSE (its batch sum / B
    is the mean of this over the batch).

  Args:
    x: [B, H, W, C] float targets.
    decoder_out: [B, H, W, C], logits or means.
    likelihood: ``"bernoulli"`` or ``"gaussian"``.

  Returns:
    [B] per-sample negative log-likelihoods.
  """
  chex.assert_equal_shape([x, decoder_out])
  if likelihood == "bernoulli":
    # BCE(l, x) = softplus(l) − x·l, the stable form of −x log σ(l) − (1−x) log σ(−l).
    per_pixel = jax.nn.softplus(decoder_out) - x * decoder_out
  elif likelihood == "gaussian":
    per_pixel = jnp.square(decoder_out - x)
  else:
    raise ValueError(
        f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")
  return per_pixel.reshape(x.shape[0], -1).sum(-1)


def betatc_objective(
    x: jax.Array,
    decoder_out: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    z: jax.Array,
    *,
    dataset_size: int,
    anneal: jax.Array | float = 1.0,
    alpha: float = 1.0,
    beta: float = 6.0,
    gamma: float = 1.0,
    estimator: estimators.Estimator = "mss",
    likelihood: Likelihood = "bernoulli",
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """β-TCVAE loss: −E log p(x|z) + α·mi + β·tc + γ·anneal·dim_kl.

  All terms are means over the batch (per sample). ``anneal`` is the
  warm-up weight, e.g. ``linear_anneal(step, anneal_steps)``; use 1.0 at
  evaluation.

  Args:
    x: [B, H, W, C] inputs (targets of the reconstruction).
    decoder_out: [B, H, W, C] decoder output for z (logits for Bernoulli).
    mu: [B, D]; logvar: [B, D]; z: [B, D] with z ~ q(z|x).
    dataset_size: N, the size of the training set.
    anneal: scalar weight of the dimension-wise KL.
    alpha, beta, gamma: weights of mi, tc and dim_kl.
    estimator: see ``estimators.kl_decomposition``.
    likelihood: ``"bernoulli"`` or ``"gaussian"``.

  Returns:
    (loss, metrics). ``metrics`` holds ``loss``, ``recon`` (−E log p(x|z)),
    ``mi``, ``tc``, ``dim_kl``, ``kl`` (analytic E KL(q(z|x)‖p(z))),
    ``elbo`` (−recon − kl) and ``anneal``.
  """
  chex.assert_rank([mu, logvar, z], 2)
  chex.assert_equal_shape([mu, logvar, z])
  recon = jnp.mean(reconstruction_nll(x, decoder_out, likelihood))
  terms = estimators.kl_decomposition(z, mu, logvar, dataset_size, estimator)
  anneal = jnp.asarray(anneal, jnp.float32)
  loss = (recon + alpha * terms["mi"] + beta * terms["tc"]
          + gamma * anneal * terms["dim_kl"])
  kl = jnp.mean(estimators.gaussian_kl_to_standard_normal(mu, logvar))
  metrics = {
      "loss": loss,
      "recon": recon,
      "mi": terms["mi"],
      "tc": terms["tc"],
      "dim_kl": terms["dim_kl"],
      "kl": kl,
      "elbo": -recon - kl,
      "anneal": anneal,
  }
  return loss, metrics


def beta_vae_objective(
    x: jax.Array,
    decoder_out: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    beta: float = 1.0,
    likelihood: Likelihood = "bernoulli",
    z: jax.Array | None = None,
    dataset_size: int | None = None,
    estimator: estimators.Estimator = "mss",
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """β-VAE loss (Higgins et al., 2017): −E log p(x|z) + β·E KL(q(z|x)‖p(z)).

  With ``z`` and ``dataset_size`` given, the metrics also hold the minibatch
  decomposition mi/tc/dim_kl (monitoring only; not part of the loss), so the
  two objectives log the same keys.

  Args:
    x: [B, H, W, C]; decoder_out: [B, H, W, C]; mu, logvar: [B, D].
    beta: weight of the analytic KL.
    likelihood: ``"bernoulli"`` or ``"gaussian"``.
    z: optional [B, D] samples, for the monitoring decomposition.
    dataset_size: N, required with ``z``.
    estimator: estimator of the monitoring decomposition.

  Returns:
    (loss, metrics) with ``loss``, ``recon``, ``kl``, ``elbo`` (and ``mi``,
    ``tc``, ``dim_kl`` when ``z`` is given).
  """
  chex.assert_equal_shape([mu, logvar])
  recon = jnp.mean(reconstruction_nll(x, decoder_out, likelihood))
  kl = jnp.mean(estimators.gaussian_kl_to_standard_normal(mu, logvar))
  loss = recon + beta * kl
  metrics = {"loss": loss, "recon": recon, "kl": kl, "elbo": -recon - kl}
  if z is not None:
    if dataset_size is None:
      raise ValueError("beta_vae_objective: dataset_size is required with z.")
    terms = estimators.kl_decomposition(
        jax.lax.stop_gradient(z), jax.lax.stop_gradient(mu),
        jax.lax.stop_gradient(logvar), dataset_size, estimator)
    metrics.update(mi=terms["mi"], tc=terms["tc"], dim_kl=terms["dim_kl"])
  return loss, metrics
