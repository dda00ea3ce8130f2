"""Chunked mixture densities, the building block of the dataset-level metrics.

For sample points z: [S, D] and a pool of P Gaussian posteriors
q(z|x_p) = N(mu_p, exp(logvar_p)), the per-dimension mixture log density

    log q_pool(z_sd) = logsumexp_p log N(z_sd; mu_pd, exp(logvar_pd)) − log P

and the joint one (sum over d inside the logsumexp) are computed in chunks
of the pool, so memory is O(S · chunk · D) and S × P × D is never held.

Speed: the per-dimension logsumexp is taken against a bound fixed before
the pass, M_d = max_p log N(mu_pd; mu_pd, exp(logvar_pd)) ≥ every term, so
one pass of exp-and-add over the [D, S, chunk] block suffices (with a
dims-first layout, 13× faster on 2 CPU cores than a streaming max over
[S, chunk, D]). Rows whose sum underflows (every term more than ~69 nats
below the bound) are recomputed exactly with a streaming max, so the result
is exact either way. The joint takes its max over the [S, chunk] sum,
which is D times cheaper, and needs no bound.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = math.log(2 * math.pi)
_UNDERFLOW = 1e-30      # a sum below this is recomputed exactly

DEFAULT_CHUNK = 1024
MAX_SAMPLE_CHUNK = 4096


def _log_density_t(z_t, mu_t, logvar_t, valid):
  """[D, S, C] log N(z_sd; mu_cd, exp(logvar_cd)) (dims first: the pool axis
  is the contiguous one that is reduced), −inf for invalid pool rows."""
  norm = jnp.where(valid[None], -0.5 * (_LOG_2PI + logvar_t), -jnp.inf)   # [D, C]
  inv_var = jnp.exp(-logvar_t)
  return norm[:, None, :] - 0.5 * jnp.square(z_t[:, :, None] - mu_t[:, None, :]) * inv_var[:, None, :]


@functools.partial(jax.jit, static_argnames="with_joint")
def _chunk_sums(z_t, mu_t, logvar_t, valid, bound, with_joint: bool):
  """One pool chunk: marginal Σ_c exp(log q − bound) [D, S], and the joint's
  exact logsumexp_c Σ_d log q [S] (its max is over an [S, C] array, cheap)."""
  log_q = _log_density_t(z_t, mu_t, logvar_t, valid) - bound[:, None, None]
  marginal = jnp.sum(jnp.exp(log_q), axis=-1)
  if not with_joint:
    return marginal, None
  return marginal, _chunk_joint(z_t, mu_t, logvar_t, valid)


@jax.jit
def _chunk_joint(z_t, mu_t, logvar_t, valid):
  """One pool chunk's exact joint logsumexp_c Σ_d log q: [S] (its max is over
  an [S, C] array, cheap; the marginals are not needed for it)."""
  norm = jnp.where(valid[None], -0.5 * (_LOG_2PI + logvar_t), -jnp.inf)
  inv_var = jnp.exp(-logvar_t)
  joint = sum(norm[d][None, :] - 0.5 * jnp.square(z_t[d][:, None] - mu_t[d][None, :])
              * inv_var[d][None, :] for d in range(z_t.shape[0]))      # [S, C], one fused loop
  return jax.nn.logsumexp(joint, axis=-1)


@jax.jit
def _chunk_logsumexp(z_t, mu_t, logvar_t, valid):
  """Exact per-dimension logsumexp over one pool chunk: [D, S]."""
  return jax.nn.logsumexp(_log_density_t(z_t, mu_t, logvar_t, valid), axis=-1)


def _pad(a: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([a, np.zeros((rows - len(a),) + a.shape[1:], a.dtype)]) if rows > len(a) else a


def _pool_chunks(mu: np.ndarray, logvar: np.ndarray, chunk: int):
  n_pool = -(-len(mu) // chunk) * chunk
  mu_t, lv_t = _pad(mu, n_pool).T.copy(), _pad(logvar, n_pool).T.copy()   # [D, P']
  valid = np.arange(n_pool) < len(mu)
  return [(mu_t[:, p:p + chunk], lv_t[:, p:p + chunk], valid[p:p + chunk])
          for p in range(0, n_pool, chunk)]


def _exact(z: np.ndarray, chunks) -> np.ndarray:
  """The streaming-max marginal logsumexp for a few rows z: [R, D] -> [R, D]."""
  z_t = jnp.asarray(z.T)
  marginal = jnp.full(z_t.shape, -jnp.inf)
  for mu_c, lv_c, valid_c in chunks:
    marginal = jnp.logaddexp(marginal, _chunk_logsumexp(z_t, mu_c, lv_c, valid_c))
  return np.asarray(marginal).T


def joint_log_density(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                      chunk: int = DEFAULT_CHUNK) -> np.ndarray:
  """log (1/P) Σ_p q(z_s | x_p), the joint mixture density alone: [S] float32
  (z: [S, D]; mu, logvar: [P, D]). One exp per (point, pool row), where the
  marginals need D."""
  z, mu, logvar = (np.asarray(a, np.float32) for a in (z, mu, logvar))
  chunks = _pool_chunks(mu, logvar, min(chunk, len(mu)))
  log_joint = np.empty(len(z), np.float32)
  for s0, z_t, n in _sample_chunks(z):
    acc = jnp.full(z_t.shape[1:], -jnp.inf)
    for mu_c, lv_c, valid_c in chunks:
      acc = jnp.logaddexp(acc, _chunk_joint(z_t, mu_c, lv_c, valid_c))
    log_joint[s0:s0 + n] = np.asarray(acc)[:n]
  return log_joint - math.log(len(mu))


def _sample_chunks(z: np.ndarray):
  """(start, [D, chunk] device block padded to one size, rows used) over z: [S, D]."""
  n_sample_chunks = -(-len(z) // MAX_SAMPLE_CHUNK)
  sample_chunk = -(-len(z) // n_sample_chunks)                         # little padding
  for s0 in range(0, len(z), sample_chunk):
    yield s0, jnp.asarray(_pad(z[s0:s0 + sample_chunk], sample_chunk).T), min(
        sample_chunk, len(z) - s0)


def mixture_log_density(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                        chunk: int = DEFAULT_CHUNK, with_joint: bool = True
                        ) -> tuple[np.ndarray, np.ndarray | None]:
  """log of the pool's mixture density at each sample, per dimension and joint.

  Args:
    z: [S, D] points.
    mu, logvar: [P, D] the pool's posteriors.
    chunk: pool rows per step (memory ∝ min(S, 4096) · chunk · D floats).
    with_joint: also compute the joint density (skip it to save time).

  Returns:
    (marginal [S, D], joint [S] or None) float32 log densities.
  """
  z, mu, logvar = (np.asarray(a, np.float32) for a in (z, mu, logvar))
  s, p = len(z), len(mu)
  chunks = _pool_chunks(mu, logvar, min(chunk, p))
  norm = -0.5 * (_LOG_2PI + logvar.astype(np.float64))                 # [P, D]
  bound = norm.max(0).astype(np.float32)                               # [D]
  sums_m = np.empty((s, z.shape[1]), np.float32)
  log_joint = np.empty(s, np.float32)
  for s0, z_t, n in _sample_chunks(z):
    acc_m = jnp.zeros(z_t.shape)
    acc_j = jnp.full(z_t.shape[1:], -jnp.inf)
    for mu_c, lv_c, valid_c in chunks:
      m, j = _chunk_sums(z_t, mu_c, lv_c, valid_c, bound, with_joint)
      acc_m = acc_m + m
      if with_joint:
        acc_j = jnp.logaddexp(acc_j, j)
    sums_m[s0:s0 + n] = np.asarray(acc_m).T[:n]
    log_joint[s0:s0 + n] = np.asarray(acc_j)[:n]
  with np.errstate(divide="ignore"):
    marginal = np.log(sums_m) + bound
  redo = np.flatnonzero((sums_m < _UNDERFLOW).any(1))
  for r0 in range(0, len(redo), MAX_SAMPLE_CHUNK):
    rows = redo[r0:r0 + MAX_SAMPLE_CHUNK]
    marginal[rows] = _exact(z[rows], chunks)
  log_p = math.log(p)
  return marginal - log_p, (log_joint - log_p if with_joint else None)


def sample_posterior(key: jax.Array, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
  """One z ~ q(z|x) per row: [N, D] -> [N, D] (numpy)."""
  eps = np.asarray(jax.random.normal(key, mu.shape, jnp.float32))
  return (mu + np.exp(0.5 * logvar) * eps).astype(np.float32)


__all__ = ["mixture_log_density", "joint_log_density", "sample_posterior", "DEFAULT_CHUNK"]
