"""Peak memory and time of the β-TCVAE estimator: one-shot [B, B, D] vs blocked.

  python benchmarks/estimator_memory.py           # B in 2048, 8192, 16384 (D = 10)
  python benchmarks/estimator_memory.py --quick   # B in 2048, 8192

Memory is XLA's compiled temp-buffer size for value_and_grad of the loss
(exact, no run needed); time is the median of 3 runs after warm-up (one run
at B = 16,384, ~6 min in all). The one-shot path at B = 16,384 is only
compiled, not run: it needs 43 GB.
Prints `ratio memory one-shot/blocked B=...` lines.
"""

import argparse
import time

import jax
import numpy as np

from betatc_jax import estimators


def loss_and_grad(block_size):
  def loss(z, mu, logvar):
    out = estimators.kl_decomposition(z, mu, logvar, 737_280, "mss", block_size=block_size)
    return out["mi"] + 6 * out["tc"] + out["dim_kl"]
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  d = 10
  print(f"{'B':>6} {'path':>9} {'block':>6} {'temp MB':>10} {'time s':>8}")
  for b in ((2048, 8192) if args.quick else (2048, 8192, 16_384)):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(b, d)).astype(np.float32)
    logvar = rng.uniform(-3, 0, (b, d)).astype(np.float32)
    z = (mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))).astype(np.float32)
    mem = {}
    for name, block in (("one-shot", None), ("blocked", "auto" if b * b * d * 4 > estimators.AUTO_BLOCK_BYTES else 256)):
      fn = loss_and_grad(block)
      compiled = fn.lower(z, mu, logvar).compile()
      mem[name] = compiled.memory_analysis().temp_size_in_bytes / 2**20
      seconds = float("nan")
      if not (name == "one-shot" and b > 8192):
        jax.block_until_ready(compiled(z, mu, logvar))
        times = []
        for _ in range(3 if b <= 8192 else 1):
          t = time.perf_counter()
          jax.block_until_ready(compiled(z, mu, logvar))
          times.append(time.perf_counter() - t)
        seconds = float(np.median(times))
      rows = estimators._block_rows(block, b, d)
      print(f"{b:>6} {name:>9} {rows or b:>6} {mem[name]:>10.0f} {seconds:>8.2f}", flush=True)
    print(f"ratio memory one-shot/blocked B={b}: {mem['one-shot'] / mem['blocked']:.1f}")


if __name__ == "__main__":
  main()
