"""The β-TCVAE objective, and the baselines it is compared with (β-VAE,
FactorVAE's VAE side, DIP-VAE-I/II, the annealed VAE), as pure functions of arrays.

Imports only jax, numpy and chex (through ``estimators`` and ``checks``), so
the loss can be used in any JAX training loop.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp

from betatc_jax import checks, estimators

Likelihood = Literal["bernoulli", "clamped_bernoulli", "gaussian"]
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "clamped_bernoulli", "gaussian")
LOGIT_LIKELIHOODS: tuple[str, ...] = ("bernoulli", "clamped_bernoulli")   # decoders of logits
CLAMP_EPS = 1e-8     # the official code's eps (lib/dist.py)


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

  * ``"bernoulli"``: ``decoder_out`` are logits l and x ∈ [0, 1];
    −log p = Σ_pixels BCE(l, x), exact: softplus(l) − x·l.
  * ``"clamped_bernoulli"``: the official β-TCVAE code's Bernoulli
    (rtqichen/beta-tcvae, ``lib/dist.py``, ``Bernoulli.log_density``), in its
    float32 arithmetic: p = (σ(l) + ε)(1 − 2ε), ε = 1e-8, and
    −log p = −Σ_pixels [x log(p + ε) + (1 − x) log(1 − p + ε)]. It equals
    the exact BCE to float32 rounding while σ(l) is away from 0 and 1, and
    caps a pixel's loss at −log ε ≈ 18.4 nats (with no gradient) beyond.
  * ``"gaussian"``: ``decoder_out`` is the mean image;
    −log p = Σ_pixels (out − x)², the seed's summed MSE (its batch sum / B
    is the mean of this over the batch).

  Args:
    x: [B, H, W, C] float targets.
    decoder_out: [B, H, W, C], logits or means.
    likelihood: one of ``LIKELIHOODS``.

  Returns:
    [B] per-sample negative log-likelihoods.

  Raises:
    ValueError: for mismatched shapes, integer ``x``, or (outside jit, for
      the Bernoulli likelihoods) ``x`` outside [0, 1].
  """
  checks.check_images(x, "the objective (its x)", unit_range=likelihood in LOGIT_LIKELIHOODS)
  with checks.shape_errors_as_value_errors():
    chex.assert_equal_shape([x, decoder_out])
  if likelihood == "bernoulli":
    # BCE(l, x) = softplus(l) − x·l, the stable form of −x log σ(l) − (1−x) log σ(−l).
    per_pixel = jax.nn.softplus(decoder_out) - x * decoder_out
  elif likelihood == "clamped_bernoulli":
    p = (jax.nn.sigmoid(decoder_out) + CLAMP_EPS) * (1.0 - 2.0 * CLAMP_EPS)
    per_pixel = -(x * jnp.log(p + CLAMP_EPS) + (1.0 - x) * jnp.log(1.0 - p + CLAMP_EPS))
  elif likelihood == "gaussian":
    per_pixel = jnp.square(decoder_out - x)
  else:
    raise ValueError(
        f"Unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}.")
  return per_pixel.reshape(x.shape[0], -1).sum(-1)


class ObjectiveWeights(NamedTuple):
  """The weights of ``weighted_objective``, as arrays (scalars for one run,
  [K] for a vmapped population of K runs), so one compiled step serves
  runs of different objectives, β and estimators.

  Attributes:
    mi, tc, dim_kl, kl: float32 weights of the four KL terms.
    anneal_steps: int32 warm-up length of dim_kl (0: none).
    estimator: int32 ``estimators.estimator_code`` of the decomposition
      (of log q(z)).
    marginal_estimator: int32 code of the estimator of each log q(z_j)
      (the same as ``estimator`` for a named estimator).
    discriminator_tc: float32 weight of a discriminator's TC estimate (FactorVAE's γ).
    dip_od, dip_d: float32 DIP-VAE weights of the off-diagonal and diagonal
      covariance penalty.
    dip_variance: float32, 0 or 1: DIP-VAE-II (1) adds the mean posterior
      variance to the covariance of the means (DIP-VAE-I: 0).
    capacity_gamma, capacity_max: float32 γ and C_max of the annealed VAE.
    capacity_steps: int32 steps over which the capacity grows to C_max.
  """
  mi: jax.Array
  tc: jax.Array
  dim_kl: jax.Array
  kl: jax.Array
  anneal_steps: jax.Array
  estimator: jax.Array
  marginal_estimator: jax.Array
  discriminator_tc: jax.Array
  dip_od: jax.Array
  dip_d: jax.Array
  dip_variance: jax.Array
  capacity_gamma: jax.Array
  capacity_max: jax.Array
  capacity_steps: jax.Array


OBJECTIVES: tuple[str, ...] = ("betatc", "beta_vae", "factorvae", "dip_vae_i", "dip_vae_ii",
                               "annealed_vae")
# Objectives whose train state carries a discriminator (``betatc_jax.discriminator``).
DISCRIMINATOR_OBJECTIVES: tuple[str, ...] = ("factorvae",)


def objective_weights(name: str, *, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0,
                      anneal_steps: int = 0, estimator: str = "mss",
                      marginal_estimator: str | None = None, factorvae_gamma: float = 10.0,
                      dip_lambda_od: float = 1.0,
                      dip_lambda_d: float | None = None, capacity_gamma: float = 1000.0,
                      capacity_max: float = 25.0, capacity_steps: int = 100_000
                      ) -> ObjectiveWeights:
  """The weights that make ``weighted_objective`` one of the named objectives.

  * ``"betatc"``: mi, tc, dim_kl weighted α, β, γ (``betatc_objective``).
  * ``"beta_vae"``: the analytic KL weighted β (``beta_vae_objective``).
  * ``"factorvae"`` (Kim & Mnih, 2018): KL + ``factorvae_gamma`` · the
    discriminator's TC estimate (``betatc_jax.discriminator``).
  * ``"dip_vae_i"`` / ``"dip_vae_ii"`` (Kumar et al., 2018): KL +
    ``dip_penalty`` of the covariance of the means (I) or of q(z) (II),
    with λ_d = ``dip_lambda_d`` (default 10·λ_od for I, λ_od for II, as
    disentanglement_lib).
  * ``"annealed_vae"`` (Burgess et al., 2018): γ·|KL − C(step)|.

  For every objective but β-TCVAE the decomposition is computed for
  monitoring only (weight 0). ``marginal_estimator`` (None: ``estimator``)
  estimates each log q(z_j) (``estimators.kl_decomposition``).

  Raises:
    ValueError: an unknown objective or estimator, or a negative weight.
  """
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown objective {name!r}; expected one of {OBJECTIVES}.")
  if dip_lambda_d is None:
    dip_lambda_d = 10.0 * dip_lambda_od if name == "dip_vae_i" else dip_lambda_od
  negative = {k: v for k, v in dict(
      alpha=alpha, beta=beta, gamma=gamma, factorvae_gamma=factorvae_gamma,
      dip_lambda_od=dip_lambda_od, dip_lambda_d=dip_lambda_d, capacity_gamma=capacity_gamma,
      capacity_max=capacity_max, capacity_steps=capacity_steps, anneal_steps=anneal_steps
  ).items() if v < 0}
  if negative:
    raise ValueError(f"Objective weights must be >= 0, got {negative}.")
  w = dict(mi=0.0, tc=0.0, dim_kl=0.0, kl=1.0, discriminator_tc=0.0, dip_od=0.0, dip_d=0.0,
           dip_variance=0.0, capacity_gamma=0.0, capacity_max=0.0)
  if name == "betatc":
    w.update(mi=alpha, tc=beta, dim_kl=gamma, kl=0.0)
  elif name == "beta_vae":
    w.update(kl=beta)
  elif name == "factorvae":
    w.update(discriminator_tc=factorvae_gamma)
  elif name in ("dip_vae_i", "dip_vae_ii"):
    w.update(dip_od=dip_lambda_od, dip_d=dip_lambda_d,
             dip_variance=1.0 if name == "dip_vae_ii" else 0.0)
  else:
    w.update(kl=0.0, capacity_gamma=capacity_gamma, capacity_max=capacity_max)
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  i32 = lambda v: jnp.asarray(v, jnp.int32)
  return ObjectiveWeights(
      mi=f32(w["mi"]), tc=f32(w["tc"]), dim_kl=f32(w["dim_kl"]), kl=f32(w["kl"]),
      anneal_steps=i32(anneal_steps), estimator=i32(estimators.estimator_code(estimator)),
      marginal_estimator=i32(estimators.estimator_code(
          estimator if marginal_estimator is None else marginal_estimator)),
      discriminator_tc=f32(w["discriminator_tc"]), dip_od=f32(w["dip_od"]), dip_d=f32(w["dip_d"]),
      dip_variance=f32(w["dip_variance"]), capacity_gamma=f32(w["capacity_gamma"]),
      capacity_max=f32(w["capacity_max"]), capacity_steps=i32(capacity_steps))


def dip_covariance(mu: jax.Array, logvar: jax.Array, include_variance: jax.Array | float
                   ) -> jax.Array:
  """DIP-VAE's covariance [D, D] of mu, logvar [B, D]:

      Cov_B[μ] + include_variance · diag(mean_B σ²)

  the covariance of the means (DIP-VAE-I, include_variance 0), or of the
  aggregate posterior q(z) = mean_B N(μ, σ²) (DIP-VAE-II, 1). Cov_B uses
  the 1/B (biased) normalisation, as disentanglement_lib.
  """
  with checks.shape_errors_as_value_errors():
    chex.assert_rank([mu, logvar], 2)
  centred = mu - mu.mean(axis=0, keepdims=True)
  cov = centred.T @ centred / mu.shape[0]
  return cov + jnp.asarray(include_variance, cov.dtype) * jnp.diag(jnp.exp(logvar).mean(axis=0))


def dip_penalty(cov: jax.Array, lambda_od: jax.Array | float, lambda_d: jax.Array | float
                ) -> jax.Array:
  """λ_od · Σ_{i≠j} C_ij² + λ_d · Σ_i (C_ii − 1)² of a covariance C [D, D]."""
  diagonal = jnp.diagonal(cov)
  off_diagonal = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(diagonal))
  return lambda_od * off_diagonal + lambda_d * jnp.sum(jnp.square(diagonal - 1.0))


def capacity_at(step: jax.Array | int, capacity_max: jax.Array | float,
                capacity_steps: jax.Array | int) -> jax.Array:
  """The annealed VAE's target KL at update ``step`` (0-based):
  C_max · min(step / T, 1), disentanglement_lib's schedule (T <= 0: C_max)."""
  step = jnp.asarray(step, jnp.float32)
  steps = jnp.asarray(capacity_steps, jnp.float32)
  fraction = jnp.where(steps > 0, jnp.minimum(step / jnp.maximum(steps, 1.0), 1.0), 1.0)
  return jnp.asarray(capacity_max, jnp.float32) * fraction


def _weighted_sum(x, decoder_out, mu, logvar, z, *, dataset_size, estimator, likelihood,
                  w_mi, w_tc, w_dim_kl, w_kl, anneal, extra=None, marginal_estimator=None
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """recon + w_mi·mi + w_tc·tc + w_dim_kl·anneal·dim_kl + w_kl·kl (+ the
  ``extra(kl) -> (weighted terms, their metrics)``), and its terms."""
  with checks.shape_errors_as_value_errors():
    chex.assert_rank([mu, logvar, z], 2)
    chex.assert_equal_shape([mu, logvar, z])
  checks.check_batch_sizes("the objective", x=x, decoder_out=decoder_out, mu=mu, logvar=logvar,
                           z=z)
  recon = jnp.mean(reconstruction_nll(x, decoder_out, likelihood))
  terms = estimators.kl_decomposition(z, mu, logvar, dataset_size, estimator,
                                      marginal_estimator=marginal_estimator)
  kl = jnp.mean(estimators.gaussian_kl_to_standard_normal(mu, logvar))
  anneal = jnp.asarray(anneal, jnp.float32)
  loss = recon + w_mi * terms["mi"] + w_tc * terms["tc"] + w_dim_kl * anneal * terms["dim_kl"]
  if not (isinstance(w_kl, float) and w_kl == 0.0):
    loss = loss + w_kl * kl
  metrics = {"recon": recon, "mi": terms["mi"], "tc": terms["tc"],
             "dim_kl": terms["dim_kl"], "kl": kl, "elbo": -recon - kl, "anneal": anneal}
  if extra is not None:
    term, logged = extra(kl)
    loss = loss + term
    metrics.update(logged)
  return loss, {"loss": loss, **metrics}


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
    discriminator_tc: jax.Array | float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Every objective of ``OBJECTIVES`` as one function of array weights:

      loss = −E log p(x|z) + w_mi·mi + w_tc·tc + w_dim_kl·anneal(step)·dim_kl + w_kl·KL
             + w_discriminator_tc · discriminator_tc                                    (FactorVAE)
             + dip_penalty(dip_covariance(μ, logvar, dip_variance), dip_od, dip_d)  (DIP-VAE)
             + capacity_gamma · |KL − capacity_at(step)|                  (annealed VAE)

  with the decomposition from ``weights.estimator`` and the analytic KL.
  ``objective_weights`` gives the weights of each named objective; with them
  the loss equals ``betatc_objective`` / ``beta_vae_objective`` (a zero
  weight adds an exact 0, so the values and gradients are the same).

  Args:
    x, decoder_out: [B, H, W, C]; mu, logvar, z: [B, D].
    step: the 0-based update index (for the warm-up and the capacity).
    weights: scalar ``ObjectiveWeights``.
    dataset_size: N, the size of the training set.
    likelihood: one of ``LIKELIHOODS``.
    discriminator_tc: a discriminator's TC estimate of z (``discriminator.density_ratio_tc``),
      differentiable in z; 0 without a discriminator.

  Returns:
    (loss, metrics) with ``loss``, ``recon``, ``mi``, ``tc``, ``dim_kl``,
    ``kl``, ``elbo``, ``anneal``, ``discriminator_tc``, ``dip_penalty`` and ``capacity``.
  """
  def extra(kl):
    dip = dip_penalty(dip_covariance(mu, logvar, weights.dip_variance), weights.dip_od,
                      weights.dip_d)
    capacity = capacity_at(step, weights.capacity_max, weights.capacity_steps)
    estimate = jnp.asarray(discriminator_tc, jnp.float32)
    term = (weights.discriminator_tc * estimate + dip
            + weights.capacity_gamma * jnp.abs(kl - capacity))
    return term, {"discriminator_tc": estimate, "dip_penalty": dip, "capacity": capacity}

  return _weighted_sum(
      x, decoder_out, mu, logvar, z, dataset_size=dataset_size, estimator=weights.estimator,
      likelihood=likelihood, w_mi=weights.mi, w_tc=weights.tc, w_dim_kl=weights.dim_kl,
      w_kl=weights.kl, anneal=linear_anneal(step, weights.anneal_steps), extra=extra,
      marginal_estimator=weights.marginal_estimator)


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
    marginal_estimator: estimators.Estimator | None = None,
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
    likelihood: one of ``LIKELIHOODS``.
    marginal_estimator: the estimator of each log q(z_j); None: ``estimator``.

  Returns:
    (loss, metrics). ``metrics`` holds ``loss``, ``recon`` (−E log p(x|z)),
    ``mi``, ``tc``, ``dim_kl``, ``kl`` (analytic E KL(q(z|x)‖p(z))),
    ``elbo`` (−recon − kl) and ``anneal``.
  """
  return _weighted_sum(
      x, decoder_out, mu, logvar, z, dataset_size=dataset_size, estimator=estimator,
      likelihood=likelihood, w_mi=alpha, w_tc=beta, w_dim_kl=gamma, w_kl=0.0, anneal=anneal,
      marginal_estimator=marginal_estimator)


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
    likelihood: one of ``LIKELIHOODS``.
    z: optional [B, D] samples, for the monitoring decomposition.
    dataset_size: N, required with ``z``.
    estimator: estimator of the monitoring decomposition.

  Returns:
    (loss, metrics) with ``loss``, ``recon``, ``kl``, ``elbo`` (and ``mi``,
    ``tc``, ``dim_kl`` when ``z`` is given).
  """
  with checks.shape_errors_as_value_errors():
    chex.assert_equal_shape([mu, logvar])
  checks.check_batch_sizes("beta_vae_objective", x=x, decoder_out=decoder_out, mu=mu,
                           logvar=logvar, z=z)
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
