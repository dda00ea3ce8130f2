"""Estimators of the β-TCVAE ELBO decomposition (Chen et al., 2018).

For a minibatch of B samples z_i ~ q(z|x_i), with D latent dimensions and a
dataset of N points, the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) is
estimated from the batch. The decomposition of the KL term is

    E[KL(q(z|x) ‖ p(z))] = mi + tc + dim_kl
    mi     = E[log q(z|x) − log q(z)]              (index-code mutual information)
    tc     = E[log q(z) − log ∏_j q(z_j)]          (total correlation)
    dim_kl = E[log ∏_j q(z_j) − log p(z)]          (dimension-wise KL)

Every estimator here is a weighted logsumexp over the batch of the matrix
L[i, j, d] = log q(z_id | x_j):

    log q(z_i)        ≈ logsumexp_j ( Σ_d L[i, j, d] + log w[i, j] )
    log ∏_d q(z_id)   ≈ Σ_d logsumexp_j ( L[i, j, d] + log w[i, j] )

and the estimators differ only in the weights w:

* ``"mss"`` (minibatch stratified sampling, the paper's Sec. C.2). With
  M = B − 1:  w[i, i] = 1/N;  w[i, (i+1) mod B] = (N − M)/(N·M);  every other
  entry 1/M. Each row sums to 1, and for a batch drawn uniformly without
  replacement the estimate of q(z_i) is unbiased.
* ``"mws"`` (minibatch weighted sampling, Sec. C.1): w[i, j] = 1/(N·B).
  It is a lower bound in expectation (biased low).
* ``"reference"``: AntixK PyTorch-VAE's ``betatc_vae.py``, reproduced number
  for number. Its strides write 1/N into *column 0* and (N − M)/(N·M) into
  column 1 of every row (plus w[B−2, 0] = (N − M)/(N·M)), leaving 1/M on the
  diagonal (the "column layout"), and it adds log w to every latent
  dimension before the sum over d, so log q(z_i) carries D·log w[i, j].
* ``"official_mss"``: the official code's ``--mss`` path (rtqichen/beta-tcvae,
  ``vae_quant.py``, ``_log_importance_weight_matrix`` and ``VAE.elbo``): the
  same column layout (its stride M + 1 = B walks down column 0), with log w
  added once to log q(z_i), as the formula intends.

  In both column layouts the sample's own, largest density q(z_i|x_i) gets
  weight 1/M like the other samples (rows 0 and 1 aside), so up to
  a near-constant offset they weight the batch as MWS does, not as MSS: they
  bias q(z) high. Kept for parity and comparisons.

The joint and the marginals can be estimated with different weights: with
``marginal_estimator`` e', log q(z_i) takes the weights of ``estimator`` e
and each log q(z_id) those of e'. e' = e (the default) is the named
estimator; the two mixtures of MSS and MWS separate which of the two
estimates a result depends on.

The estimator can also be chosen by an int32 array, its index in
``ESTIMATORS`` (``estimator_code``): then one compiled function serves every
estimator, as a vmapped population of runs needs. The rows of w are built
from indices for every layout and the code selects one, so the values are
exactly those of the named estimator, and no [B, B] array is stored.

This module imports only jax, numpy and chex, so other projects can use the
estimators without the trainer or the data code.
"""

from __future__ import annotations

import math
from typing import Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np

from betatc_jax import checks

Estimator = Literal["mss", "mws", "reference", "official_mss"]
ESTIMATORS: tuple[str, ...] = ("mss", "mws", "reference", "official_mss")
REFERENCE_CODE = ESTIMATORS.index("reference")
# The weight layout of each estimator: the two column-layout ones share theirs.
_LAYOUT = {"mss": "mss", "mws": "mws", "reference": "column", "official_mss": "column"}


def estimator_code(estimator: str) -> int:
  """The index of ``estimator`` in ``ESTIMATORS``: the array form of the choice.

  Raises:
    ValueError: for an unknown name.
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"Unknown estimator {estimator!r}; expected one of {ESTIMATORS}.")
  return ESTIMATORS.index(estimator)

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """Elementwise log N(x; mu, exp(logvar)).

  log N(x; mu, σ²) = −½ (log 2π + log σ² + (x − mu)² / σ²).

  Args:
    x: any shape, broadcastable with ``mu`` and ``logvar``.
    mu: means.
    logvar: log variances.

  Returns:
    The log densities, with the broadcast shape of the inputs.
  """
  return -0.5 * (_LOG_2PI + logvar + jnp.square(x - mu) * jnp.exp(-logvar))


def _check_sizes(batch_size: int, dataset_size: int, estimator: str | jax.Array) -> None:
  if not isinstance(estimator, str):   # a code array: the values are checked where it is made
    estimator = "mws" if batch_size < 2 else "mss"
  estimator_code(estimator)
  if not isinstance(dataset_size, (int, np.integer)) or isinstance(dataset_size, bool):
    raise ValueError(
        "dataset_size must be a Python int (the number N of training points), "
        f"got {dataset_size!r}.")
  if estimator != "mws" and batch_size < 2:
    raise ValueError(
        f"The {estimator!r} estimator needs batch_size >= 2, got {batch_size}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if dataset_size < batch_size:
    raise ValueError(
        f"dataset_size ({dataset_size}) is smaller than the batch size "
        f"({batch_size}); the minibatch estimators sample a batch without "
        "replacement from the dataset, so N >= B is required.")


def log_importance_weights(batch_size: int, dataset_size: int) -> jax.Array:
  """Log weights of minibatch stratified sampling (MSS).

  Row i holds the weights that estimate q(z_i) from the batch (the formula is
  in the module docstring, estimator ``"mss"``).

  Args:
    batch_size: B >= 2.
    dataset_size: N >= B.

  Returns:
    log w: [B, B] float32.
  """
  _check_sizes(batch_size, dataset_size, "mss")
  return _log_weight_rows(jnp.arange(batch_size), batch_size, dataset_size, "mss")


def _log_weight_rows(rows: jax.Array, batch_size: int, dataset_size: int,
                     estimator: str | jax.Array) -> jax.Array:
  """Rows ``rows`` of the [B, B] log weights, built from indices: [R, B].

  The constants are computed once on the host (float64 log for MSS and MWS;
  float32 values and log, as torch computes them, for the column layout), so
  any block of rows equals the same rows of the full matrix exactly. For a
  code array, every layout is built and the code selects one (with B < 2
  only MWS is defined, and the other layouts are NaN).
  """
  if not isinstance(estimator, str):
    layouts = [_log_weight_rows(rows, batch_size, dataset_size, name) if batch_size >= 2
               or name == "mws" else jnp.full((len(rows), batch_size), jnp.nan, jnp.float32)
               for name in ESTIMATORS]
    return jnp.select([estimator == code for code in range(len(ESTIMATORS) - 1)],
                      layouts[:-1], layouts[-1])
  b, n = batch_size, float(dataset_size)
  m = b - 1
  cols = jnp.arange(b)[None, :]
  r = rows[:, None]
  layout = _LAYOUT[estimator]
  if layout == "mws":
    return jnp.full((len(rows), b), -math.log(n * b), jnp.float32)
  if layout == "mss":
    own, strat, other = (np.float32(np.log(v)) for v in (1.0 / n, (n - m) / (n * m), 1.0 / m))
    return jnp.where(cols == r, own, jnp.where(cols == (r + 1) % b, strat, other))
  # The column layout: 1/N down column 0, strat down column 1, and
  # w[B-2, 0] = strat; 1/M elsewhere (the diagonal included).
  own, strat, other = (np.log(np.float32(v)) for v in
                       (1.0 / n, (n - b + 1) / (n * (b - 1)), 1.0 / (b - 1)))
  w = jnp.where(cols == 0, own, jnp.where(cols == 1, strat, other))
  return jnp.where((r == b - 2) & (cols == 0), strat, w)


def _log_q_zx_matrix(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """L[i, j, d] = log q(z_id | x_j), as vmaps of ``gaussian_log_density``.

  Args:
    z: [R, D] (rows i); mu: [B, D]; logvar: [B, D].

  Returns:
    [R, B, D].
  """
  over_j = jax.vmap(gaussian_log_density, in_axes=(None, 0, 0))
  over_i = jax.vmap(over_j, in_axes=(0, None, None))
  return over_i(z, mu, logvar)


def _aggregate_rows(rows: jax.Array, z_rows: jax.Array, mu: jax.Array, logvar: jax.Array,
                    dataset_size: int, estimator: str | jax.Array,
                    marginal_estimator: str | jax.Array) -> tuple[jax.Array, jax.Array]:
  """log q(z_i) and log ∏_d q(z_id) for the samples ``rows``: ([R], [R])."""
  log_q_zx_matrix = _log_q_zx_matrix(z_rows, mu, logvar)                # [R, B, D]
  batch_size = mu.shape[0]
  log_w = _log_weight_rows(rows, batch_size, dataset_size, estimator)   # [R, B]
  # The reference adds log w to every dimension before the sum over d.
  joint = {False: lambda: log_q_zx_matrix.sum(-1) + log_w,
           True: lambda: (log_q_zx_matrix + log_w[:, :, None]).sum(-1)}
  if isinstance(estimator, str):
    log_joint = joint[estimator == "reference"]()
  else:
    log_joint = jnp.where(estimator == REFERENCE_CODE, joint[True](), joint[False]())
  log_q_z = jax.nn.logsumexp(log_joint, axis=1)
  same = marginal_estimator is estimator or (
      isinstance(marginal_estimator, str) and marginal_estimator == estimator)
  log_w_marginal = log_w if same else _log_weight_rows(rows, batch_size, dataset_size,
                                                       marginal_estimator)
  log_prod_q_zj = jax.nn.logsumexp(log_q_zx_matrix + log_w_marginal[:, :, None], axis=1).sum(-1)
  return log_q_z, log_prod_q_zj


# Above this many bytes of the [B, B, D] matrix, "auto" switches to blocks.
AUTO_BLOCK_BYTES = 256 * 2**20
_BLOCK_TARGET_BYTES = 32 * 2**20


def _block_rows(block_size: int | str | None, batch_size: int, latent_dim: int) -> int | None:
  """Rows per block, or None for the one-shot [B, B, D] path."""
  if block_size is None:
    return None
  if block_size == "auto":
    if batch_size * batch_size * latent_dim * 4 <= AUTO_BLOCK_BYTES:
      return None
    return max(1, _BLOCK_TARGET_BYTES // (batch_size * latent_dim * 4))
  if not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size must be None, 'auto' or a positive int, got {block_size!r}.")
  return None if block_size >= batch_size else block_size


def kl_decomposition(
    z: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    dataset_size: int,
    estimator: Estimator | jax.Array = "mss",
    block_size: int | str | None = "auto",
    marginal_estimator: Estimator | jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Minibatch estimate of the decomposition mi + tc + dim_kl.

  The formulas are in the module docstring.

  Memory: the one-shot path holds the [B, B, D] matrix (10.7 GB at B=16,384,
  D=10, float32). With ``block_size`` rows per block, the rows are mapped
  over in blocks under ``jax.checkpoint``, so the forward and the backward
  pass hold one [block, B, D] block at a time; the weights are built per
  block from indices, so no [B, B] array exists either. The results are the
  same to float rounding. ``"auto"`` (default) uses blocks of ~32 MB once
  the matrix would exceed 256 MB.

  Args:
    z: [B, D] samples, z_i ~ q(z|x_i).
    mu: [B, D] posterior means.
    logvar: [B, D] posterior log variances.
    dataset_size: N, the number of points the batch is drawn from (a Python
      int; it enters the weights, and with it the constant log N).
    estimator: a name of ``ESTIMATORS`` (default ``"mss"``), or its
      ``estimator_code`` as an int32 scalar array (may be traced).
    block_size: None (one shot), ``"auto"``, or rows per block.
    marginal_estimator: the estimator of each log q(z_id) (a name or a
      code, like ``estimator``); None: ``estimator``'s.

  Returns:
    A dict with per-sample ``log_q_zx``, ``log_q_z``, ``log_prod_q_zj`` and
    ``log_p_z`` (each [B]) and the batch means ``mi``, ``tc``, ``dim_kl``
    (scalars).

  Raises:
    ValueError: at trace time, for an unknown estimator, B < 2 with any
      estimator but ``"mws"``, dataset_size < B, mismatched shapes or a bad
      block_size.
  """
  if z.ndim != 2 or mu.shape != z.shape or logvar.shape != z.shape:
    raise ValueError(
        "z, mu and logvar must all be [B, D] with the same shape; got "
        f"z {tuple(z.shape)}, mu {tuple(mu.shape)}, logvar {tuple(logvar.shape)}.")
  batch_size, latent_dim = z.shape
  marginal_estimator = estimator if marginal_estimator is None else marginal_estimator
  _check_sizes(batch_size, dataset_size, estimator)
  _check_sizes(batch_size, dataset_size, marginal_estimator)
  with checks.shape_errors_as_value_errors():
    chex.assert_type([z, mu, logvar], float)

  log_q_zx = gaussian_log_density(z, mu, logvar).sum(-1)             # [B]
  log_p_z = gaussian_log_density(z, 0.0, 0.0).sum(-1)                # [B]
  rows = jnp.arange(batch_size)
  block = _block_rows(block_size, batch_size, latent_dim)
  if block is None:
    log_q_z, log_prod_q_zj = _aggregate_rows(rows, z, mu, logvar, dataset_size, estimator,
                                             marginal_estimator)
  else:
    num_blocks = -(-batch_size // block)
    padded = num_blocks * block
    rows_p = jnp.concatenate([rows, jnp.zeros(padded - batch_size, rows.dtype)])
    z_p = jnp.concatenate([z, jnp.zeros((padded - batch_size, latent_dim), z.dtype)])

    @jax.checkpoint
    def one_block(args):
      return _aggregate_rows(*args, mu, logvar, dataset_size, estimator, marginal_estimator)

    log_q_z, log_prod_q_zj = jax.lax.map(
        one_block, (rows_p.reshape(num_blocks, block), z_p.reshape(num_blocks, block, latent_dim)))
    log_q_z = log_q_z.reshape(-1)[:batch_size]
    log_prod_q_zj = log_prod_q_zj.reshape(-1)[:batch_size]

  return {
      "log_q_zx": log_q_zx,
      "log_q_z": log_q_z,
      "log_prod_q_zj": log_prod_q_zj,
      "log_p_z": log_p_z,
      "mi": jnp.mean(log_q_zx - log_q_z),
      "tc": jnp.mean(log_q_z - log_prod_q_zj),
      "dim_kl": jnp.mean(log_prod_q_zj - log_p_z),
  }


def gaussian_kl_to_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """Analytic KL(N(mu, exp(logvar)) ‖ N(0, I)), summed over the last axis.

  KL = ½ Σ_d (mu_d² + exp(logvar_d) − 1 − logvar_d).

  Args:
    mu: [..., D]; logvar: [..., D].

  Returns:
    [...], one KL per sample.
  """
  return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)
