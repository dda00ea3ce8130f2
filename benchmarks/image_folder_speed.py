"""Image folders: decoding speed (CelebA-like JPEGs) and cached load time.

  python benchmarks/image_folder_speed.py            # 2,000 images
  python benchmarks/image_folder_speed.py --num 20000

Writes ``--num`` random 178×218 JPEGs (CelebA's aligned size) to a temporary
folder, then loads them as the seed's transform does (CenterCrop 148, Resize
64, RGB) with a fresh cache: first load (decode on a thread pool + write the
checksummed cache) and cached load. Prints images per second and
`ratio first/cached=X`.
"""

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num", type=int, default=2000)
  args = parser.parse_args()
  os.environ["BETATC_JAX_CACHE"] = tempfile.mkdtemp()
  from PIL import Image

  from betatc_jax.data import images
  folder = pathlib.Path(tempfile.mkdtemp()) / "img_align_celeba"
  folder.mkdir()
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
  for i in range(args.num):  # smooth-ish images, so the JPEGs are of a realistic size
    shifted = np.roll(base, i, axis=1)
    Image.fromarray(shifted).save(folder / f"{i:06d}.jpg", quality=90)
  t = time.perf_counter()
  ds = images.image_folder(folder, image_size=64, center_crop=148, progress=False)
  first = time.perf_counter() - t
  t = time.perf_counter()
  images.image_folder(folder, image_size=64, center_crop=148, progress=False)
  cached = time.perf_counter() - t
  print(f"images={ds.images.shape} cpus={os.cpu_count()} first_load_s={first:.2f} "
        f"({args.num / first:,.0f} img/s decode+crop+resize+cache) cached_load_s={cached:.2f} "
        f"ratio first/cached={first / cached:.1f}")


if __name__ == "__main__":
  main()
