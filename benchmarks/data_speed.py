"""Procedural dSprites: full render time and cached load time.

  python benchmarks/data_speed.py

Uses a fresh temporary cache. Prints `render_s=X cached_load_s=Y ratio render/cached=Z`.
"""

import os
import tempfile
import time


def main():
  os.environ["BETATC_JAX_CACHE"] = tempfile.mkdtemp()
  from betatc_jax.data import load_dataset
  t = time.perf_counter()
  ds = load_dataset("dsprites")
  first = time.perf_counter() - t
  t = time.perf_counter()
  load_dataset("dsprites")
  cached = time.perf_counter() - t
  print(f"images={ds.images.shape} first_load_s={first:.1f} (render + write cache) "
        f"cached_load_s={cached:.1f} ratio first/cached={first / cached:.1f}")


if __name__ == "__main__":
  main()
