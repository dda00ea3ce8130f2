"""Image folders: torchvision's crop/resize, conversions, order, cache, bad input."""

import os
import pathlib
import warnings

import numpy as np
import pytest
from PIL import Image

from betatc_jax.data import images, load_dataset


def make_folder(root: pathlib.Path) -> dict[str, np.ndarray]:
  """Synthetic images: JPEG and PNG, smaller and larger than the crop,
  grayscale, RGBA, palette, nested folders, and a non-image file."""
  rng = np.random.default_rng(0)
  made = {}

  def save(rel, array, mode=None, **kw):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path, **kw)
    made[rel] = array

  save("a_large.png", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
  save("b_small.jpg", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), quality=95)
  save("c_gray.png", rng.integers(0, 256, (50, 50), dtype=np.uint8))
  save("d_rgba.png", rng.integers(0, 256, (40, 70, 4), dtype=np.uint8))
  save("nested/deeper/e.JPEG", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
  palette = Image.fromarray(rng.integers(0, 256, (33, 44, 3), dtype=np.uint8)).convert("P")
  palette.save(root / "f_palette.png")
  made["f_palette.png"] = None
  (root / "notes.txt").write_text("not an image")
  return made


def torchvision_reference(path, crop, size, mode="RGB"):
  """CenterCrop(crop) then Resize(size) as torchvision does on a PIL image,
  written from PIL directly."""
  image = Image.open(path).convert(mode)
  w, h = image.size
  if crop is not None:
    if w < crop or h < crop:
      pad_l, pad_t = (crop - w) // 2 if crop > w else 0, (crop - h) // 2 if crop > h else 0
      canvas = Image.new(mode, (max(w, crop), max(h, crop)))
      canvas.paste(image, (pad_l, pad_t))
      image, (w, h) = canvas, canvas.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
  return np.asarray(image.resize((size, size), Image.BILINEAR))


@pytest.fixture()
def folder(tmp_path):
  make_folder(tmp_path / "imgs")
  return tmp_path / "imgs"


def test_sorted_recursive_and_transformed_like_torchvision(folder):
  ds = load_dataset("images", path=str(folder), image_size=16, center_crop=48, use_cache=False,
                    progress=False)
  files = images.list_images(folder)
  assert [f.relative_to(folder).as_posix() for f in files] == [
      "a_large.png", "b_small.jpg", "c_gray.png", "d_rgba.png", "f_palette.png",
      "nested/deeper/e.JPEG"]
  assert ds.images.shape == (6, 16, 16, 3) and ds.images.dtype == np.uint8
  assert ds.num_factors == 0 and ds.factors.shape == (6, 0)
  for i, f in enumerate(files):
    np.testing.assert_array_equal(ds.images[i], torchvision_reference(f, 48, 16), err_msg=f.name)
  gray = load_dataset("images", path=str(folder), image_size=8, channels=1, use_cache=False,
                      progress=False)
  assert gray.images.shape == (6, 8, 8, 1)
  np.testing.assert_array_equal(gray.images[2, ..., 0],
                                torchvision_reference(files[2], None, 8, mode="L"))


def test_cache_is_used_and_rebuilt_when_the_folder_changes(folder):
  first = images.image_folder(folder, image_size=8, progress=False)
  cached = list(pathlib.Path(os.environ["BETATC_JAX_CACHE"]).glob("images_*.u8"))
  assert cached
  again = images.image_folder(folder, image_size=8, progress=False)
  np.testing.assert_array_equal(first.images, again.images)
  Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "g_new.png")
  grown = images.image_folder(folder, image_size=8, progress=False)
  assert len(grown) == len(first) + 1
  # A corrupt cache file is detected and rebuilt.
  newest = max(pathlib.Path(os.environ["BETATC_JAX_CACHE"]).glob("images_*.u8"),
               key=lambda p: p.stat().st_mtime_ns)
  data = bytearray(newest.read_bytes())
  data[-1] ^= 0xFF
  newest.write_bytes(bytes(data))
  with pytest.warns(UserWarning, match="corrupt"):
    rebuilt = images.image_folder(folder, image_size=8, progress=False)
  np.testing.assert_array_equal(rebuilt.images, grown.images)


def test_subsample_and_max_images(folder):
  ds = images.image_folder(folder, image_size=8, subsample=2, max_images=2, use_cache=False,
                           progress=False)
  full = images.image_folder(folder, image_size=8, use_cache=False, progress=False)
  np.testing.assert_array_equal(ds.images, full.images[[0, 2]])


def test_bad_input(folder, tmp_path):
  (folder / "z_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  with pytest.raises(ValueError, match="z_corrupt.jpg"):
    images.image_folder(folder, image_size=8, use_cache=False, progress=False)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ds = images.image_folder(folder, image_size=8, skip_bad=True, use_cache=False, progress=False)
  assert len(ds) == 6 and any("z_corrupt.jpg" in str(w.message) for w in caught)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="No JPEG or PNG"):
    images.image_folder(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="No image folder"):
    images.image_folder(tmp_path / "missing")
  with pytest.raises(ValueError, match="needs path"):
    load_dataset("images")
  with pytest.raises(ValueError, match="channels must be 1 or 3"):
    images.image_folder(folder, channels=4)
