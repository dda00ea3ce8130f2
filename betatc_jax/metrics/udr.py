"""UDR, Unsupervised Disentanglement Ranking (Duan et al., ICLR 2020,
"Unsupervised model selection for variational disentangled representation
learning"), in disentanglement_lib's version.

Disentangled runs of a method agree with each other up to permutation and
sign; entangled ones do not. For M runs, each with codes c^m [N, D] (the
posterior means) of the same N images and a per-latent KL to the prior
kl^m [D]:

1. Standardise each run's codes (zero mean, unit variance per latent) and
   zero the latents with KL <= 0.01 nats (collapsed ones).
2. For every ordered pair (i, j), i != j, a similarity matrix R [D, D]
   between run i's latents (rows) and run j's (columns):
   * ``"lasso"``: |W|, W [D, D] the coefficients of a Lasso regression
     (α = 0.1) predicting run j's codes from run i's;
   * ``"spearman"``: |ρ(c^i_a, c^j_b)|, Spearman's rank correlation (NaN
     for a constant, i.e. zeroed, latent).
3. Keep the rows and columns of the informative latents (KL above
   ``kl_threshold``, 0.01), then the pair's score is the relative strength

       S(R) = ½ [ mean_b r_b² / Σ_a R_ab  +  mean_a r_a² / Σ_b R_ab ],

   r_b = max_a R_ab and r_a = max_b R_ab, a 0/0 term counting as 0: 1 when
   each latent of one run matches exactly one of the other's.
4. Run i's UDR is the median over j != i of S(R^(j, i)) (the pairs in which
   it is the predicted run, as disentanglement_lib takes column i).

Differences from disentanglement_lib: none in the arithmetic. Its
``compute_udr_sklearn`` draws N = 1,000 images from the dataset; our callers
pass the codes of a fixed subset of N images shared by every run
(``evaluate``'s choice is stated there), and the KL is the run's own
evaluation of it. Spearman's matrix is computed on ranks in one product
instead of D² calls to ``scipy.stats.spearmanr`` (equal, tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats
from sklearn import linear_model

CORRELATIONS = ("lasso", "spearman")
COLLAPSED_KL = 0.01     # nats: disentanglement_lib zeroes these latents' codes


def relative_strength(similarity: np.ndarray) -> float:
  """S(R) of the module docstring for R [D_i, D_j] >= 0 (0 for an empty R)."""
  if similarity.size == 0:
    return 0.0
  with np.errstate(divide="ignore", invalid="ignore"):
    by_column = np.nan_to_num(similarity.max(0) ** 2 / similarity.sum(0), nan=0.0)
    by_row = np.nan_to_num(similarity.max(1) ** 2 / similarity.sum(1), nan=0.0)
  return float((np.nanmean(by_column) + np.nanmean(by_row)) / 2)


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """|Spearman ρ| between every column of ``a`` [N, D_a] and of ``b`` [N, D_b]:
  [D_a, D_b]; NaN where a column is constant."""
  ranks_a = scipy.stats.rankdata(a, axis=0)
  ranks_b = scipy.stats.rankdata(b, axis=0)
  ranks_a = ranks_a - ranks_a.mean(0)
  ranks_b = ranks_b - ranks_b.mean(0)
  norms = np.outer(np.sqrt((ranks_a ** 2).sum(0)), np.sqrt((ranks_b ** 2).sum(0)))
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.abs(ranks_a.T @ ranks_b / norms)


def lasso_matrix(a: np.ndarray, b: np.ndarray, alpha: float = 0.1) -> np.ndarray:
  """|W| [D_a, D_b] of the Lasso regression (α = ``alpha``) of ``b`` [N, D_b]
  on ``a`` [N, D_a]: entry (p, q) is latent p's weight in predicting latent q."""
  model = linear_model.Lasso(alpha=alpha)
  model.fit(a, b)
  return np.abs(np.atleast_2d(model.coef_)).T


def standardise(codes: np.ndarray, kl: np.ndarray) -> np.ndarray:
  """Each latent at zero mean and unit variance; collapsed latents (KL <=
  ``COLLAPSED_KL``) and constant ones set to 0."""
  mean, std = codes.mean(0), codes.std(0)
  scaled = (codes - mean) / np.where(std > 0, std, 1.0)
  return scaled * (kl > COLLAPSED_KL)


def udr(codes: Sequence[np.ndarray], kl: Sequence[np.ndarray], *,
        correlation: str = "lasso", kl_threshold: float = COLLAPSED_KL,
        filter_low_kl: bool = True) -> dict[str, np.ndarray]:
  """UDR of M runs (module docstring).

  Args:
    codes: M arrays [N, D]: each run's codes of the same N images.
    kl: M arrays [D]: each run's mean KL(q(z_j|x) ‖ p(z_j)) per latent.
    correlation: ``"lasso"`` or ``"spearman"``.
    kl_threshold: latents with KL at or below it are left out of each pair's
      score (with ``filter_low_kl``).
    filter_low_kl: leave out the uninformative latents (disentanglement_lib's
      default); False scores every latent.

  Returns:
    ``scores`` [M] (each run's UDR), ``pairwise`` [M, M] (S of each ordered
    pair, 0 on the diagonal) and ``similarity`` [M, M, D, D].

  Raises:
    ValueError: fewer than two runs, or codes and KLs of different shapes.
  """
  if correlation not in CORRELATIONS:
    raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}.")
  if len(codes) < 2 or len(codes) != len(kl):
    raise ValueError(f"UDR compares runs: give at least two, with one KL each (got "
                     f"{len(codes)} codes and {len(kl)} KLs).")
  codes = [np.asarray(c, np.float64) for c in codes]
  kl = [np.asarray(k, np.float64) for k in kl]
  shape = codes[0].shape
  if any(c.shape != shape or c.ndim != 2 for c in codes) or any(k.shape != shape[1:] for k in kl):
    raise ValueError(f"every run needs codes [N, D] of the same shape and a KL [D]; got "
                     f"{[c.shape for c in codes]} and {[k.shape for k in kl]}.")
  scaled = [standardise(c, k) for c, k in zip(codes, kl)]
  informative = [k > kl_threshold for k in kl]
  num, dim = len(codes), shape[1]
  similarity = np.zeros((num, num, dim, dim))
  pairwise = np.zeros((num, num))
  for i in range(num):
    for j in range(num):
      if i == j:
        continue
      matrix = (lasso_matrix(scaled[i], scaled[j]) if correlation == "lasso"
                else spearman_matrix(scaled[i], scaled[j]))
      similarity[i, j] = matrix
      if filter_low_kl:
        matrix = matrix[informative[i]][:, informative[j]]
      pairwise[i, j] = relative_strength(matrix)
  scores = np.asarray([np.median(np.delete(pairwise[:, i], i)) for i in range(num)])
  return {"scores": scores, "pairwise": pairwise, "similarity": similarity}
