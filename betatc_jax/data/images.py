"""Your own images: every JPEG/PNG under a folder, as a dataset without factors.

``image_folder(path, image_size=64, center_crop=148)`` reads the files under
``path`` recursively in sorted order (CelebA's ``img_align_celeba/*.jpg`` is
one case), and per image computes what torchvision's ``CenterCrop(c)`` then
``Resize(s)`` give on a PIL image: convert to RGB (RGBA and palette images
included) or to grayscale ("L") for ``channels=1``; crop the centred c × c
box (zero padding where the image is smaller, as torchvision pads); resize
to s × s with PIL's antialiased bilinear filter. Without a crop the whole
image is resized to s × s.

The decoded uint8 array is cached in ``cache.cache_dir()``, checksummed and
written atomically; the cache key covers the options and every file's
relative name, size and mtime, so any change of the folder rebuilds it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from betatc_jax.data import cache
from betatc_jax.data.ground_truth import GroundTruthDataset

SUFFIXES = (".jpg", ".jpeg", ".png")
_MAGIC = b"BTCJAX-IMAGES\n"
_VERSION = 1


def list_images(path: str | os.PathLike) -> list[pathlib.Path]:
  """Every JPEG/PNG under ``path`` (recursively), sorted by relative path.

  Raises:
    FileNotFoundError: no such folder.
    ValueError: no image in it.
  """
  root = pathlib.Path(path)
  if not root.is_dir():
    raise FileNotFoundError(f"No image folder {root}.")
  files = sorted((p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()),
                 key=lambda p: p.relative_to(root).as_posix())
  if not files:
    raise ValueError(f"No JPEG or PNG images under {root}.")
  return files


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
  """torchvision's centre crop box (left, top, right, bottom) of a c × c crop;
  it extends past the image (padded with zeros) when the image is smaller."""
  left = int(round((width - crop) / 2.0))
  top = int(round((height - crop) / 2.0))
  return left, top, left + crop, top + crop


def load_image(file: pathlib.Path, image_size: int, center_crop: int | None,
               channels: int) -> np.ndarray:
  """One image, cropped and resized: uint8 [image_size, image_size, channels].

  Raises:
    ValueError: the file cannot be decoded (named in the message).
  """
  from PIL import Image
  try:
    with Image.open(file) as image:
      image = image.convert("L" if channels == 1 else "RGB")
      if center_crop is not None:
        if image.width < center_crop or image.height < center_crop:  # pad as torchvision does
          padded = Image.new(image.mode, (max(image.width, center_crop),
                                          max(image.height, center_crop)))
          padded.paste(image, ((padded.width - image.width) // 2,
                               (padded.height - image.height) // 2))
          image = padded
        image = image.crop(center_crop_box(image.width, image.height, center_crop))
      image = image.resize((image_size, image_size), Image.BILINEAR)
      array = np.asarray(image, np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f"Cannot read image {file}: {type(e).__name__}: {e}") from e
  return array.reshape(image_size, image_size, channels)


def _fingerprint(root: pathlib.Path, files: Sequence[pathlib.Path], options: dict) -> str:
  digest = hashlib.sha256(json.dumps({**options, "version": _VERSION}, sort_keys=True).encode())
  for f in files:
    stat = f.stat()
    digest.update(f"{f.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:20]


def image_folder(path: str | os.PathLike, image_size: int = 64, center_crop: int | None = None,
                 channels: int = 3, max_images: int | None = None, subsample: int = 1,
                 skip_bad: bool = False, use_cache: bool = True,
                 num_workers: int | None = None, progress: bool = True) -> GroundTruthDataset:
  """The images under ``path`` as a ``GroundTruthDataset`` with no factors.

  Args:
    path: the folder (searched recursively).
    image_size: s, the output is s × s.
    center_crop: c, the centred c × c crop taken first (None: no crop).
    channels: 3 (RGB) or 1 (grayscale).
    max_images: keep at most this many (after ``subsample``).
    subsample: keep every k-th file of the sorted list.
    skip_bad: skip files that cannot be decoded (a warning lists them)
      instead of raising.
    use_cache: read/write the decoded array in ``cache.cache_dir()``.
    num_workers: decoding threads (default: the CPU count).
    progress: show a progress bar while decoding.

  Returns:
    uint8 images [N, s, s, channels].

  Raises:
    FileNotFoundError: no such folder.
    ValueError: bad options, no image, or an unreadable file (unless
      ``skip_bad``), named.
  """
  if image_size < 1 or (center_crop is not None and center_crop < 1):
    raise ValueError(f"image_size and center_crop must be >= 1, got {image_size}, {center_crop}.")
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}.")
  if subsample < 1 or (max_images is not None and max_images < 1):
    raise ValueError(f"subsample and max_images must be >= 1, got {subsample}, {max_images}.")
  root = pathlib.Path(path)
  files = list_images(root)[::subsample][:max_images]
  options = {"image_size": image_size, "center_crop": center_crop, "channels": channels,
             "skip_bad": skip_bad}
  name = f"images:{root}"
  cache_path = cache.cache_dir() / f"images_{_fingerprint(root, files, options)}.u8"
  if use_cache and cache_path.exists():
    try:
      header, payload = cache.read_checked(cache_path, _MAGIC)
      images = payload.reshape(header["shape"])
      if header.get("skipped"):
        warnings.warn(f"{len(header['skipped'])} unreadable file(s) skipped: {header['skipped']}")
      return _dataset(images, name)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
      warnings.warn(f"Image cache {cache_path} is corrupt ({e}); rebuilding it.")
  images, skipped = _decode_all(files, image_size, center_crop, channels, skip_bad,
                                num_workers, progress)
  if skipped:
    warnings.warn(f"{len(skipped)} unreadable file(s) skipped: {skipped}")
  if use_cache:
    cache.write_checked(cache_path, _MAGIC, {"shape": list(images.shape), "skipped": skipped},
                        images)
  return _dataset(images, name)


def _dataset(images: np.ndarray, name: str) -> GroundTruthDataset:
  return GroundTruthDataset(images=images, factors=np.zeros((len(images), 0), np.int32),
                            factor_names=(), factor_sizes=(), name=name)


def _decode_all(files, image_size, center_crop, channels, skip_bad, num_workers, progress
                ) -> tuple[np.ndarray, list[str]]:
  """Decodes ``files`` on a thread pool (PIL releases the GIL while decoding)."""
  import tqdm

  out = np.empty((len(files), image_size, image_size, channels), np.uint8)
  ok = np.ones(len(files), bool)
  skipped = []

  def one(i):
    try:
      out[i] = load_image(files[i], image_size, center_crop, channels)
    except ValueError:
      if not skip_bad:
        raise
      ok[i] = False

  workers = num_workers or os.cpu_count() or 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
      tqdm.tqdm(total=len(files), unit="img", desc="decoding", disable=not progress) as bar:
    for future in [pool.submit(one, i) for i in range(len(files))]:
      future.result()      # re-raises the first unreadable file's error, named
      bar.update(1)
  skipped = [str(files[i]) for i in np.flatnonzero(~ok)]
  if not ok.any():
    raise ValueError(f"None of the {len(files)} images could be read.")
  return (out if ok.all() else out[ok]), skipped
