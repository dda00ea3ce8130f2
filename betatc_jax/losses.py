"""The β-TCVAE and β-VAE objectives as pure functions of arrays.

Imports only jax and chex (through ``estimators``), so the loss can be used in
any JAX training loop.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp

from betatc_jax import estimators

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")


def linear_anneal(step: jax.Array | int, anneal_steps: jax.Array | int) -> jax.Array:
  """Weight of the dimension-wise KL during warm-up: min((step + 1)/T, 1).

  ``step`` counts the updates already applied (0 for the first update), so
  the first update uses 1/T, exactly as the seed's counter (incremented
  before use) does, but as a pure function of the step. ``anneal_steps`` <= 0
  means no warm-up (weight 1).

  Args:
    step: scalar int, the 0-based update index.
    anneal_steps: T, the length of the warm-up (a Python int or an int array).

  Returns:
    A float32 scalar in (0, 1].
  """
  if isinstance(anneal_steps, int) and anneal_steps <= 0:
    return jnp.ones((), jnp.float32)
  step = jnp.asarray(step, jnp.float32)
  anneal_steps = jnp.asarray(anneal_steps)
  ramp = jnp.minimum((step + 1.0) / jnp.maximum(anneal_steps, 1).astype(jnp.float32), 1.0)
  return jnp.where(anneal_steps > 0, ramp, 1.0).astype(jnp.float32)


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


class ObjectiveWeights(NamedTuple):
  """The weights of ``weighted_objective``, as arrays (scalars for one run,
  [K] for a vmapped population of K runs), so one compiled step serves
  β-VAE and β-TCVAE runs with any β and estimator.

  Attributes:
    mi, tc, dim_kl, kl: float32 weights of the four KL terms.
    anneal_steps: int32 warm-up length of dim_kl (0: none).
    estimator: int32 ``estimators.estimator_code`` of the decomposition.
  """
  mi: jax.Array
  tc: jax.Array
  dim_kl: jax.Array
  kl: jax.Array
  anneal_steps: jax.Array
  estimator: jax.Array


OBJECTIVES: tuple[str, ...] = ("betatc", "beta_vae")


def objective_weights(name: str, *, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0,
                      anneal_steps: int = 0, estimator: str = "mss") -> ObjectiveWeights:
  """The weights that make ``weighted_objective`` one of the named objectives.

  * ``"betatc"``: mi, tc, dim_kl weighted α, β, γ (``betatc_objective``).
  * ``"beta_vae"``: the analytic KL weighted β (``beta_vae_objective``); the
    decomposition is then computed for monitoring only (weight 0).

  Raises:
    ValueError: for an unknown objective or estimator.
  """
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown objective {name!r}; expected one of {OBJECTIVES}.")
  mi, tc, dim_kl, kl = (alpha, beta, gamma, 0.0) if name == "betatc" else (0.0, 0.0, 0.0, beta)
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  return ObjectiveWeights(f32(mi), f32(tc), f32(dim_kl), f32(kl),
                          jnp.asarray(anneal_steps, jnp.int32),
                          jnp.asarray(estimators.estimator_code(estimator), jnp.int32))


def _weighted_sum(x, decoder_out, mu, logvar, z, *, dataset_size, estimator, likelihood,
                  w_mi, w_tc, w_dim_kl, w_kl, anneal) -> tuple[jax.Array, dict[str, jax.Array]]:
  """recon + w_mi·mi + w_tc·tc + w_dim_kl·anneal·dim_kl + w_kl·kl, and its terms."""
  chex.assert_rank([mu, logvar, z], 2)
  chex.assert_equal_shape([mu, logvar, z])
  recon = jnp.mean(reconstruction_nll(x, decoder_out, likelihood))
  terms = estimators.kl_decomposition(z, mu, logvar, dataset_size, estimator)
  kl = jnp.mean(estimators.gaussian_kl_to_standard_normal(mu, logvar))
  anneal = jnp.asarray(anneal, jnp.float32)
  loss = recon + w_mi * terms["mi"] + w_tc * terms["tc"] + w_dim_kl * anneal * terms["dim_kl"]
  if not (isinstance(w_kl, float) and w_kl == 0.0):
    loss = loss + w_kl * kl
  metrics = {"loss": loss, "recon": recon, "mi": terms["mi"], "tc": terms["tc"],
             "dim_kl": terms["dim_kl"], "kl": kl, "elbo": -recon - kl, "anneal": anneal}
  return loss, metrics


def weighted_objective(
    x: jax.Array,
    decoder_out: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    z: jax.Array,
    step: jax.Array | int,
    weights: ObjectiveWeights,
    *,
    dataset_size: int,
    likelihood: Likelihood = "bernoulli",
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """β-VAE and β-TCVAE as one function of array weights:

      loss = −E log p(x|z) + w_mi·mi + w_tc·tc + w_dim_kl·anneal(step)·dim_kl + w_kl·KL

  with the decomposition from ``weights.estimator`` and the analytic KL.
  ``objective_weights`` gives the weights of each named objective; with them
  the loss equals ``betatc_objective`` / ``beta_vae_objective`` (a zero
  weight adds an exact 0, so the values and gradients are the same).

  Args:
    x, decoder_out: [B, H, W, C]; mu, logvar, z: [B, D].
    step: the 0-based update index (for the warm-up).
    weights: scalar ``ObjectiveWeights``.
    dataset_size: N, the size of the training set.
    likelihood: ``"bernoulli"`` or ``"gaussian"``.

  Returns:
    (loss, metrics) with ``loss``, ``recon``, ``mi``, ``tc``, ``dim_kl``,
    ``kl``, ``elbo`` and ``anneal``.
  """
  return _weighted_sum(
      x, decoder_out, mu, logvar, z, dataset_size=dataset_size, estimator=weights.estimator,
      likelihood=likelihood, w_mi=weights.mi, w_tc=weights.tc, w_dim_kl=weights.dim_kl,
      w_kl=weights.kl, anneal=linear_anneal(step, weights.anneal_steps))


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
  return _weighted_sum(
      x, decoder_out, mu, logvar, z, dataset_size=dataset_size, estimator=estimator,
      likelihood=likelihood, w_mi=alpha, w_tc=beta, w_dim_kl=gamma, w_kl=0.0, anneal=anneal)


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
