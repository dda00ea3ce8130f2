"""PyTorch-semantics convolutions and dense layers with a fast CPU path.

``Conv2d`` and ``ConvTranspose2d`` compute PyTorch's ``Conv2d(k, s, p)`` and
``ConvTranspose2d(k, s, p, output_padding)`` on NHWC arrays; ``Dense`` is
``nn.Dense``. Their parameters are exactly flax's ``nn.Conv`` /
``nn.ConvTranspose(..., transpose_kernel=True)`` / ``nn.Dense`` ones (names,
shapes, initial values), so checkpoints do not depend on which
implementation ran. Two implementations:

* ``"lax"``: ``lax.conv_general_dilated`` / ``lax.conv_transpose`` / ``@``.
  Best on GPU/TPU.
* ``"matmul"``: one matrix product into all kernel taps, then shifted adds,
  every product through ``matmul`` (its backward pass as two 2-D GEMMs).
  Exact reformulations (the same sums in another order); XLA:CPU computes
  their gradients as plain GEMMs, where its native strided and transposed
  conv gradients are several times slower than PyTorch's.

``"auto"`` picks ``"matmul"`` when the default backend is the CPU.

The math. Write a 1-D index; 2-D applies it to each axis.

Transposed conv: ``y[o] = Σ_{i, a: o = s·i − p + a} x[i] · W[a]``, output
size ``O = (H − 1)·s − 2p + k + output_padding``. For the output phase
``o = s·m + r`` the taps are ``a = s·δ + r + p`` with ``0 ≤ a < k`` and
``i = m − δ``, so with ``P[i, a] = x[i] · W[a]`` (one matmul into k·C
columns) ``y[s·m + r] = Σ_δ P[m − δ, s·δ + r + p]`` (zero outside), and the
s phases are interleaved.

Strided conv: ``y[o] = Σ_a x_pad[s·o + a] · W[a]`` with ``x_pad`` padded by
p. Writing ``a = s·q + r`` and space-to-depth ``x_s[u, r] = x_pad[s·u + r]``:
``y[o] = Σ_q P[o + q, q]`` with ``P[u, q] = Σ_r x_s[u, r] · W[s·q + r]``
(one matmul into ⌈k/s⌉·C columns; taps past k are zero).
"""

from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ConvImpl = Literal["auto", "lax", "matmul"]
CONV_IMPLS: tuple[str, ...] = ("auto", "lax", "matmul")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def resolve_impl(impl: str) -> str:
  """``"auto"`` -> ``"matmul"`` on CPU, ``"lax"`` elsewhere."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl {impl!r}; expected one of {CONV_IMPLS}.")
  if impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "lax"
  return impl


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x @ w`` with its backward pass written out as two 2-D GEMMs.

  x: [..., K], w: [K, N] -> [..., N]. The gradients are the usual
  dx = g wᵀ and dw = X2ᵀ G2, with X2 = x as [M, K] and G2 = g as [M, N]
  (M = ∏ x.shape[:-1]). Autodiff of ``x @ w`` gives XLA:CPU the same sums
  as one contraction over all leading axes, which it lays out with extra
  transposed copies; this form makes the train step of the seed's conv net
  ~20% faster and the MLP's 11–16% (``benchmarks/RESULTS.md``).
  """
  return x @ w


def _matmul_fwd(x: jax.Array, w: jax.Array):
  return x @ w, (x, w)


def _matmul_bwd(res, g):
  x, w = res
  k, n = w.shape
  dw = jnp.einsum("mk,mn->kn", x.reshape(-1, k), g.reshape(-1, n))
  return g @ w.T, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _shift(x: jax.Array, dy: int, dx: int, out_hw: tuple[int, int]) -> jax.Array:
  """``out[:, i, j] = x[:, i + dy, j + dx]`` for i < Ho, j < Wo; zero outside x.

  One ``lax.pad`` (negative amounts crop), whose gradient is one pad of the
  same size: no full-size buffer per shift in the backward pass.

  Args:
    x: [B, H, W, ...].
    dy, dx: the shift.
    out_hw: (Ho, Wo).

  Returns:
    [B, Ho, Wo, ...].
  """
  h, w = x.shape[1:3]
  config = [(0, 0, 0), (-dy, out_hw[0] - h + dy, 0), (-dx, out_hw[1] - w + dx, 0)]
  return lax.pad(x, jnp.zeros((), x.dtype), config + [(0, 0, 0)] * (x.ndim - 3))


def _shifted_windows(x: jax.Array, offsets: list[tuple[int, int]],
                     out_hw: tuple[int, int]) -> jax.Array:
  """Input-side gather: ``out[b, i, j, t] = x[b, i + dy_t, j + dx_t]``, zero outside.

  Args:
    x: [B, H, W, C].
    offsets: (dy, dx) per window t.
    out_hw: (Ho, Wo).

  Returns:
    [B, Ho, Wo, T·C], windows concatenated in ``offsets`` order.
  """
  return jnp.concatenate([_shift(x, dy, dx, out_hw) for dy, dx in offsets], axis=-1)


def _shifted_tap_sums(p: jax.Array, groups: list[list[tuple[int, int, int, int]]],
                      out_hw: tuple[int, int]) -> list[jax.Array]:
  """Output-side sums: for each group g,
  ``y_g[b, i, j] = Σ_(ty, tx, dy, dx) ∈ g  p[b, i + dy, j + dx, ty, tx]``, zero outside.

  Args:
    p: [B, H, W, Ty, Tx, C] per-tap products.
    groups: lists of (ty, tx, dy, dx) tuples.
    out_hw: (Ho, Wo).

  Returns:
    One [B, Ho, Wo, C] array per group.
  """
  b, h, w, ty_count, tx_count, c = p.shape
  # One split into per-tap arrays (its gradient is one concatenate), not a
  # slice per tap (whose gradient would be a full-size pad each).
  per_tap = jnp.split(p.reshape(b, h, w, ty_count * tx_count * c), ty_count * tx_count, axis=-1)
  sums = []
  for taps in groups:
    out = jnp.zeros((b,) + tuple(out_hw) + (c,), p.dtype) if not taps else None
    for ty, tx, dy, dx in taps:
      term = _shift(per_tap[ty * tx_count + tx], dy, dx, out_hw)
      out = term if out is None else out + term
    sums.append(out)
  return sums


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
           impl: ConvImpl = "auto") -> jax.Array:
  """PyTorch's ``Conv2d`` (square kernel, symmetric padding), no bias.

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cin, Cout] (flax ``nn.Conv`` layout).
    stride: s.
    padding: p, zeros on every side.
    impl: ``"auto"``, ``"lax"`` or ``"matmul"`` (module docstring).

  Returns:
    [B, Ho, Wo, Cout], ``Ho = ⌊(H + 2p − k) / s⌋ + 1``.
  """
  if resolve_impl(impl) == "lax":
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding),) * 2,
                                    dimension_numbers=_DIMENSIONS)
  b, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  s = stride
  oh, ow = (h + 2 * padding - k) // s + 1, (w + 2 * padding - k) // s + 1
  if s == 1 and oh * ow * cin > h * w * k * k * cout:     # e.g. the seed's 3×3 conv to C channels
    # No padding or space-to-depth: the taps read P = x @ W outside x as zeros.
    p = matmul(x, kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)).reshape(b, h, w, k, k, cout)
    taps = [(a, c, a - padding, c - padding) for a in range(k) for c in range(k)]
    return _shifted_tap_sums(p, [taps], (oh, ow))[0]
  q = math.ceil(k / s)                                   # taps per axis after space-to-depth
  uh, uw = oh + q - 1, ow + q - 1                        # space-to-depth rows used
  xp = jnp.pad(x, ((0, 0), (padding, max(0, s * uh - h - padding)),
                   (padding, max(0, s * uw - w - padding)), (0, 0)))[:, :s * uh, :s * uw]
  xs = xp.reshape(b, uh, s, uw, s, cin).transpose(0, 1, 3, 2, 4, 5).reshape(b, uh, uw, s * s * cin)
  kp = jnp.pad(kernel, ((0, q * s - k), (0, q * s - k), (0, 0), (0, 0)))
  kp = kp.reshape(q, s, q, s, cin, cout)                 # [qy, ry, qx, rx, Cin, Cout]
  offsets = [(qy, qx) for qy in range(q) for qx in range(q)]
  if oh * ow * s * s * cin <= uh * uw * cout:            # the smaller intermediate
    patches = _shifted_windows(xs, offsets, (oh, ow))    # [B, Ho, Wo, (qy, qx, ry, rx, Cin)]
    return matmul(patches, kp.transpose(0, 2, 1, 3, 4, 5).reshape(q * q * s * s * cin, cout))
  wmat = kp.transpose(1, 3, 4, 0, 2, 5).reshape(s * s * cin, q * q * cout)
  p = matmul(xs, wmat).reshape(b, uh, uw, q, q, cout)
  return _shifted_tap_sums(p, [[(qy, qx, qy, qx) for qy, qx in offsets]], (oh, ow))[0]


def conv_transpose2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                     output_padding: int = 0, impl: ConvImpl = "auto") -> jax.Array:
  """PyTorch's ``ConvTranspose2d`` (square kernel), no bias.

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cout, Cin] (flax ``nn.ConvTranspose(transpose_kernel=True)``
      layout; PyTorch's [Cin, Cout, k, k] with axes moved, not flipped).
    stride, padding, output_padding: as in PyTorch.
    impl: ``"auto"``, ``"lax"`` or ``"matmul"`` (module docstring). The
      matmul path needs the output size to be a multiple of the stride and
      falls back to lax otherwise.

  Returns:
    [B, O, O', Cout], ``O = (H − 1)·s − 2p + k + output_padding``.
  """
  b, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[2]
  s, p = stride, padding
  oh, ow = (h - 1) * s - 2 * p + k + output_padding, (w - 1) * s - 2 * p + k + output_padding
  if resolve_impl(impl) == "lax" or oh % s or ow % s:
    lo = k - 1 - p
    return lax.conv_transpose(x, kernel, (s, s), ((lo, lo + output_padding),) * 2,
                              dimension_numbers=_DIMENSIONS, transpose_kernel=True)
  m, n = oh // s, ow // s
  # Phase r reads x[m − δ] with tap a = s·δ + r + p, for every δ with 0 <= a < k.
  deltas = [[d for d in range(-k, k + 1) if 0 <= s * d + r + p < k] for r in range(s)]
  shifts = sorted({-d for r in range(s) for d in deltas[r]})
  offsets = [(dy, dx) for dy in shifts for dx in shifts]
  if len(offsets) * cin <= k * k * cout:                 # the smaller intermediate
    # One matmul from the shifted windows of x straight into the s·s phases.
    zeros = jnp.zeros((cin, cout), x.dtype)
    blocks = [[[kernel[s * -dy + ry + p, s * -dx + rx + p].T
                if -dy in deltas[ry] and -dx in deltas[rx] else zeros
                for rx in range(s)] for ry in range(s)] for dy, dx in offsets]
    # [T, ry, rx, Cin, Cout] -> [(T, Cin), (ry, rx, Cout)]
    wmat = jnp.stack([jnp.stack([jnp.stack(row) for row in block]) for block in blocks])
    wmat = wmat.transpose(0, 3, 1, 2, 4).reshape(len(offsets) * cin, s * s * cout)
    y = matmul(_shifted_windows(x, offsets, (m, n)), wmat)  # [B, M, N, (ry, rx, Cout)]
    y = y.reshape(b, m, n, s, s, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, oh, ow, cout)
  # One matmul into all k·k taps, then shifted sums per phase.
  taps_all = matmul(x, kernel.transpose(3, 0, 1, 2).reshape(cin, k * k * cout)).reshape(
      b, h, w, k, k, cout)
  groups = [[(s * dy + ry + p, s * dx + rx + p, -dy, -dx) for dy in deltas[ry] for dx in deltas[rx]]
            for ry in range(s) for rx in range(s)]
  y = jnp.stack(_shifted_tap_sums(taps_all, groups, (m, n)), axis=3)   # [B, M, N, (ry, rx), C]
  return y.reshape(b, m, n, s, s, cout).transpose(0, 1, 3, 2, 4, 5).reshape(b, oh, ow, cout)


class Dense(nn.Module):
  """``nn.Dense`` (the same params: ``kernel`` [in, out], lecun_normal;
  ``bias`` zeros) whose product is ``matmul`` on CPU.

  x: [..., in] -> [..., features].
  """
  features: int
  impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    y = matmul(x, kernel) if resolve_impl(self.impl) == "matmul" else x @ kernel
    return y + bias


class Conv2d(nn.Module):
  """PyTorch's ``Conv2d(k, stride, padding)`` with flax ``nn.Conv``'s params.

  x: [B, H, W, Cin] -> [B, Ho, Wo, features].
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return conv2d(x, kernel, self.stride, self.padding, self.impl) + bias


class ConvTranspose2d(nn.Module):
  """PyTorch's ``ConvTranspose2d(k, stride, padding, output_padding)`` with the
  params of flax ``nn.ConvTranspose(..., transpose_kernel=True)``.

  (flax's own ``padding="SAME"`` is a different operator: it differs from
  PyTorch by up to 2.3 on the seed's layers.)

  x: [B, H, W, Cin] -> [B, O, O', features].
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  impl: ConvImpl = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, self.kernel_size, self.features, x.shape[-1]))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return conv_transpose2d(x, kernel, self.stride, self.padding, self.output_padding,
                            self.impl) + bias
