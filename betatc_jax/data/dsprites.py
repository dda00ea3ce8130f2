"""dSprites: rendered procedurally (the offline default), or DeepMind's .npz.

The procedural set has the factor grid and row order of DeepMind's
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``:

  shape        3   square, ellipse, heart
  scale        6   linspace(0.5, 1, 6)
  orientation 40   linspace(0, 2π, 40) (so indices 0 and 39 coincide)
  pos_x       32   linspace(0, 1, 32), left to right
  pos_y       32   linspace(0, 1, 32), top to bottom

737,280 binary 64×64×1 images, row-major (shape slowest, pos_y fastest).
Pixels are 0 or 255. Each (shape, scale, orientation) sprite is rendered
once, with 4×4 supersampling and a coverage threshold of ½, in a 33×33
window centred on its centre pixel; the positions are integer shifts of one
pixel per step, centres 16…47, so every sprite stays inside the frame.
The drawings are ours, not DeepMind's pixels.
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from betatc_jax.data import cache
from betatc_jax.data.cache import cache_dir
from betatc_jax.data.ground_truth import GroundTruthDataset

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
IMAGE_SIZE = 64
RENDER_VERSION = 1

_WINDOW = 33          # sprite window; its centre pixel is at offset 16
_UNIT_PX = 10.0       # sprite size unit at scale 1, in pixels
_SUPERSAMPLE = 4


def factor_values() -> tuple[np.ndarray, ...]:
  """The value of each class of each factor, as in DeepMind's file."""
  return (np.arange(1, 4, dtype=np.float64), np.linspace(0.5, 1.0, 6),
          np.linspace(0.0, 2 * np.pi, 40), np.linspace(0.0, 1.0, 32),
          np.linspace(0.0, 1.0, 32))


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether sprite-frame points (u right, v up, in size units) are inside."""
  if shape == 0:   # square, side 2
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0
  if shape == 1:   # ellipse, semi-axes 1.25 and 0.625
    return (u / 1.25) ** 2 + (v / 0.625) ** 2 <= 1.0
  # heart: (x² + y² − 1)³ − x² y³ <= 0, scaled to about the square's size
  x, y = u * 1.15, v * 1.15 + 0.15
  return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0


def render_sprite(shape: int, scale: float, orientation: float) -> np.ndarray:
  """One sprite, bool [33, 33], centred on pixel (16, 16), rotated
  counter-clockwise by ``orientation`` radians."""
  half = _WINDOW // 2
  offsets = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5
  coords = (np.arange(_WINDOW)[:, None] - half + offsets[None, :]).reshape(-1)
  rows, cols = np.meshgrid(coords, coords, indexing="ij")
  x, y = cols, -rows                         # y up
  c, s = np.cos(orientation), np.sin(orientation)
  u = (c * x + s * y) / (scale * _UNIT_PX)   # rotate the points by −θ
  v = (-s * x + c * y) / (scale * _UNIT_PX)
  covered = _inside(shape, u, v).reshape(_WINDOW, _SUPERSAMPLE, _WINDOW, _SUPERSAMPLE)
  return covered.mean(axis=(1, 3)) >= 0.5


def render(index_lists: Sequence[Sequence[int]] | None = None) -> np.ndarray:
  """Renders the grid (or the sub-grid of the given class indices per factor).

  Args:
    index_lists: for each of the 5 factors, the class indices to render
      (default: all). Positions keep their full-grid pixel location.

  Returns:
    uint8 [∏ len(index_lists[k]), 64, 64, 1], values 0 or 255, row-major
    over the factors in FACTOR_NAMES order.
  """
  if index_lists is None:
    index_lists = [range(n) for n in FACTOR_SIZES]
  idx = [np.asarray(list(ix), np.int64) for ix in index_lists]
  shapes, scales, orients, xs, ys = idx
  values = factor_values()
  sprites = np.stack([
      render_sprite(int(sh), values[1][sc], values[2][o])
      for sh in shapes for sc in scales for o in orients])      # [S, 33, 33]
  sprites = sprites.astype(np.uint8) * np.uint8(255)
  images = np.zeros((len(sprites), len(xs), len(ys), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  for a, px in enumerate(xs):
    for b, py in enumerate(ys):
      images[:, a, b, py:py + _WINDOW, px:px + _WINDOW] = sprites
  return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)


def _grid_factors(sizes: Sequence[int]) -> np.ndarray:
  grids = np.meshgrid(*[np.arange(n, dtype=np.int32) for n in sizes], indexing="ij")
  return np.stack([g.reshape(-1) for g in grids], axis=1)


# ------------------------------------------------------------------- cache

_MAGIC = b"BTCJAX-DSPRITES\n"


def _write_cache(path: pathlib.Path, images: np.ndarray) -> None:
  """Bit-packs the binary images; writes header + bits atomically."""
  cache.write_checked(path, _MAGIC, {"shape": list(images.shape), "version": RENDER_VERSION},
                      np.packbits(images.reshape(-1) > 127))


def _read_cache(path: pathlib.Path) -> np.ndarray:
  """Reads and verifies a cache file. Raises ValueError if it is corrupt."""
  header, packed = cache.read_checked(path, _MAGIC)
  shape = tuple(header["shape"])
  if header.get("version") != RENDER_VERSION or packed.size * 8 < np.prod(shape):
    raise ValueError("wrong version or size")
  images = np.unpackbits(packed, count=int(np.prod(shape)))
  images *= np.uint8(255)  # 0/1 -> 0/255, in place
  return images.reshape(shape)


def procedural_dsprites(subsample: Sequence[int] = (1, 1, 1, 1, 1),
                        use_cache: bool = True) -> GroundTruthDataset:
  """The procedural dSprites, or a sub-grid of it.

  Args:
    subsample: a step per factor; factor k keeps classes 0, s_k, 2 s_k, …
      (e.g. (1, 1, 1, 2, 2) keeps every other position: 184,320 images).
      The classes are renumbered 0…n_k − 1 in the returned dataset.
    use_cache: read/write the bit-packed, checksummed cache in
      ``cache_dir()``; a corrupt cache file is rebuilt.

  Returns:
    A GroundTruthDataset with uint8 [N, 64, 64, 1] images.
  """
  subsample = tuple(int(s) for s in subsample)
  if len(subsample) != 5 or min(subsample) < 1:
    raise ValueError(f"subsample must be 5 positive steps (one per factor), got {subsample}.")
  index_lists = [np.arange(0, n, s) for n, s in zip(FACTOR_SIZES, subsample)]
  sizes = tuple(len(ix) for ix in index_lists)
  images = None
  path = cache_dir() / f"dsprites_v{RENDER_VERSION}_{'-'.join(map(str, subsample))}.bits"
  if use_cache and path.exists():
    try:
      images = _read_cache(path)
      if images.shape != (int(np.prod(sizes)), IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError("unexpected shape")
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
      warnings.warn(f"dSprites cache {path} is corrupt ({e}); rebuilding it.")
      images = None
  if images is None:
    images = render(index_lists)
    if use_cache:
      _write_cache(path, images)
  values = tuple(v[ix] for v, ix in zip(factor_values(), index_lists))
  return GroundTruthDataset(
      images=images, factors=_grid_factors(sizes), factor_names=FACTOR_NAMES,
      factor_sizes=sizes, factor_values=values,
      name=f"procedural dSprites (subsample {subsample})")


# ------------------------------------------------------------------- npz

def dsprites_from_npz(path: str | os.PathLike) -> GroundTruthDataset:
  """DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, validated.

  Keys ``imgs`` (uint8 [N, H, W], values 0/1), ``latents_classes`` (int
  [N, 6]: color, shape, scale, orientation, pos_x, pos_y) and
  ``latents_values``. The constant color column is dropped.

  Raises:
    FileNotFoundError: if the file is missing.
    ValueError: for missing keys, wrong shapes, dtypes or values.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(
        f"dSprites file {path} not found. Download "
        "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz from "
        "github.com/deepmind/dsprites-dataset, or use the procedural default "
        "(dataset.name='dsprites' without a path).")
  with np.load(path, allow_pickle=False) as data:
    missing = {"imgs", "latents_classes", "latents_values"} - set(data.files)
    if missing:
      raise ValueError(f"{path} is not a dSprites npz: missing keys {sorted(missing)}.")
    imgs, classes, values = data["imgs"], data["latents_classes"], data["latents_values"]
  if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
    raise ValueError(f"{path}: imgs must be [N, H, H], got {imgs.shape}.")
  if imgs.dtype != np.uint8 or imgs.max(initial=0) > 1:
    raise ValueError(f"{path}: imgs must be uint8 with values 0/1, got {imgs.dtype} "
                     f"with max {imgs.max(initial=0)}.")
  if classes.shape != (len(imgs), 6) or values.shape != (len(imgs), 6):
    raise ValueError(f"{path}: latents_classes and latents_values must be [{len(imgs)}, 6], "
                     f"got {classes.shape} and {values.shape}.")
  if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
    raise ValueError(f"{path}: latents_classes must be non-negative integers.")
  factors = classes[:, 1:].astype(np.int32)
  sizes = tuple(int(m) + 1 for m in factors.max(0))
  per_factor_values = tuple(
      np.array([values[factors[:, k] == c, k + 1][0] if np.any(factors[:, k] == c) else np.nan
                for c in range(sizes[k])]) for k in range(5))
  images = imgs[..., None] * np.uint8(255)
  return GroundTruthDataset(images=images, factors=factors, factor_names=FACTOR_NAMES,
                            factor_sizes=sizes, factor_values=per_factor_values,
                            name=f"dSprites ({path.name})")
