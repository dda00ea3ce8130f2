"""Data: procedural dSprites properties, cache, npz and tfds loaders, ground truth."""

import hashlib
import os
import pathlib
import sys

import numpy as np
import pytest

import children
from betatc_jax.data import dsprites, load_dataset
from betatc_jax.data.ground_truth import GroundTruthDataset


def _grid(ds):
  return ds.images.reshape(ds.factor_sizes + (64, 64))


def _check_properties(ds, orientation_step=1):
  """The properties the procedural set promises, on any sub-grid of it."""
  v = _grid(ds) > 0
  # Inside the frame: the border is empty, and moving a sprite never clips it.
  assert not v[..., 0, :].any() and not v[..., -1, :].any()
  assert not v[..., :, 0].any() and not v[..., :, -1].any()
  area = v.sum((-1, -2), dtype=np.int32)                                # [shape, scale, orient, x, y]
  assert (area == area[..., :1, :1]).all()
  assert (area > 0).all()
  # Area grows with scale²: scale 1 vs 0.5 is a ratio of about 4.
  ratio = area[:, -1].mean((1, 2, 3)) / area[:, 0].mean((1, 2, 3))
  np.testing.assert_allclose(ratio, 4.0, rtol=0.1)
  assert (np.diff(area.mean((0, 2, 3, 4))) > 0).all()
  # The centroid moves right with pos_x and down with pos_y, one step at a time.
  coords = np.arange(64)
  cx = (v.sum(-2, dtype=np.int32) @ coords) / area  # column profile · column index
  cy = (v.sum(-1, dtype=np.int32) @ coords) / area
  assert (np.diff(cx, axis=3) > 0).all() and np.allclose(np.diff(cx, axis=4), 0)
  assert (np.diff(cy, axis=4) > 0).all() and np.allclose(np.diff(cy, axis=3), 0)
  # Orientation 0 and 2π (index 39) are the same picture.
  if orientation_step == 1:
    np.testing.assert_array_equal(v[:, :, 0], v[:, :, 39])
    hearts = np.packbits(v[2, :, :39].reshape(-1, 4096), axis=1)
    assert len(np.unique(hearts, axis=0)) == len(hearts)  # all distinct


def test_reduced_grid_properties(tmp_path, monkeypatch):
  monkeypatch.setenv("BETATC_JAX_CACHE", str(tmp_path))
  ds = load_dataset("dsprites", subsample=(1, 1, 1, 8, 8))
  assert ds.factor_sizes == (3, 6, 40, 4, 4) and ds.images.shape == (11520, 64, 64, 1)
  assert ds.images.dtype == np.uint8 and set(np.unique(ds.images)) == {0, 255}
  _check_properties(ds)
  np.testing.assert_allclose(ds.factor_values[3], [0, 8 / 31, 16 / 31, 24 / 31])


def test_squares_repeat_only_through_symmetry(tmp_path, monkeypatch):
  """A 90° turn of a square is the same square: the 40-step grid passes near
  90° at index 9.75, so squares 2π/39 apart must still differ."""
  monkeypatch.setenv("BETATC_JAX_CACHE", str(tmp_path))
  v = _grid(load_dataset("dsprites", subsample=(1, 1, 1, 32, 32)))[0, :, :39, 0, 0]
  for scale in range(6):
    for o in range(38):
      assert (v[scale, o] != v[scale, o + 1]).any()


@pytest.mark.long
def test_full_grid(tmp_path, monkeypatch):
  monkeypatch.setenv("BETATC_JAX_CACHE", str(tmp_path))
  ds = load_dataset("dsprites")
  assert ds.images.shape == (737_280, 64, 64, 1) and len(ds) == 737_280
  assert ds.factor_sizes == (3, 6, 40, 32, 32)
  # Row-major like DeepMind's file: shape slowest, pos_y fastest.
  np.testing.assert_array_equal(ds.factors[:3], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 2]])
  np.testing.assert_array_equal(ds.factors[-1], [2, 5, 39, 31, 31])
  np.testing.assert_array_equal(ds.index_of(ds.factors[::9973]), np.arange(737_280)[::9973])
  _check_properties(ds)
  # Every heart (orientation < 39) is distinct over the whole grid.
  hearts = np.packbits(_grid(ds)[2, :, :39].reshape(-1, 4096) > 0, axis=1)
  digests = {hashlib.blake2b(h.tobytes(), digest_size=16).digest() for h in hearts}
  assert len(digests) == len(hearts) == 6 * 39 * 32 * 32
  # The cache written by the first load gives the same images back.
  again = load_dataset("dsprites")
  np.testing.assert_array_equal(again.images[::101], ds.images[::101])


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
  monkeypatch.setenv("BETATC_JAX_CACHE", str(tmp_path))
  fresh = load_dataset("dsprites", subsample=(3, 6, 8, 4, 4))
  (path,) = tmp_path.glob("*.bits")
  data = bytearray(path.read_bytes())
  data[-10] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.warns(UserWarning, match="corrupt"):
    rebuilt = load_dataset("dsprites", subsample=(3, 6, 8, 4, 4))
  np.testing.assert_array_equal(rebuilt.images, fresh.images)
  assert dsprites._read_cache(path).shape == fresh.images.shape  # healthy again
  path.write_bytes(b"truncated")
  with pytest.warns(UserWarning, match="corrupt"):
    load_dataset("dsprites", subsample=(3, 6, 8, 4, 4))


def test_concurrent_first_loads_do_not_corrupt_the_cache(tmp_path):
  code = ("from betatc_jax.data import load_dataset; import hashlib; "
          "ds = load_dataset('dsprites', subsample=(1, 2, 4, 4, 4)); "
          "print(hashlib.sha256(ds.images.tobytes()).hexdigest())")
  env = {**os.environ, "BETATC_JAX_CACHE": str(tmp_path)}
  procs = [children.Child([sys.executable, "-c", code], watch=[tmp_path], env=env)
           for _ in range(2)]
  outs = children.finish(procs)
  assert all(rc == 0 for rc, _, _ in outs), outs
  digests = {out.strip() for _, out, _ in outs}
  assert len(digests) == 1
  (path,) = tmp_path.glob("*.bits")
  assert not list(tmp_path.glob("*.tmp*"))
  assert hashlib.sha256(dsprites._read_cache(path).tobytes()).hexdigest() in digests


# --------------------------------------------------------------------- npz

def _write_npz(path, imgs=None, **overrides):
  sizes = (1, 3, 2, 2, 2, 2)
  grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
  classes = np.stack([g.reshape(-1) for g in grids], 1)
  values = classes.astype(np.float64) / 10
  if imgs is None:
    imgs = (np.random.default_rng(0).uniform(size=(len(classes), 64, 64)) > 0.7).astype(np.uint8)
  arrays = dict(imgs=imgs, latents_classes=classes, latents_values=values)
  arrays.update(overrides)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return imgs, classes


def test_npz_loader(tmp_path):
  imgs, classes = _write_npz(tmp_path / "d.npz")
  ds = load_dataset("dsprites", path=str(tmp_path / "d.npz"))
  assert ds.factor_sizes == (3, 2, 2, 2, 2) and ds.images.shape == (48, 64, 64, 1)
  np.testing.assert_array_equal(ds.images[..., 0], imgs * 255)
  np.testing.assert_array_equal(ds.factors, classes[:, 1:])
  np.testing.assert_allclose(ds.factor_values[0], [0, 0.1, 0.2])
  rows = ds.index_of(np.array([[2, 1, 0, 1, 1]]))
  np.testing.assert_array_equal(ds.factors[rows], [[2, 1, 0, 1, 1]])


@pytest.mark.parametrize("overrides,match", [
    (dict(latents_values=None), "missing keys"),
    (dict(imgs=np.full((48, 64, 64), 255, np.uint8)), "values 0/1"),
    (dict(imgs=np.zeros((48, 64, 32), np.uint8)), "must be"),
    (dict(latents_classes=np.zeros((48, 5), np.int64)), r"must be \[48, 6\]"),
])
def test_npz_loader_rejects_bad_files(tmp_path, overrides, match):
  _write_npz(tmp_path / "bad.npz", **overrides)
  with pytest.raises(ValueError, match=match):
    load_dataset("dsprites", path=str(tmp_path / "bad.npz"))


def test_missing_npz_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    load_dataset("dsprites", path=str(tmp_path / "nope.npz"))


def test_unknown_dataset_and_options():
  with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
    load_dataset("mnist")
  with pytest.raises(ValueError, match=r"Unknown option\(s\) \['colour'\]"):
    load_dataset("dsprites", colour=True)
  with pytest.raises(ValueError, match="subsample must be 5"):
    load_dataset("dsprites", subsample=(1, 2))


# --------------------------------------------------------------------- tfds

def test_tfds_under_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    ds = load_dataset("tfds:dsprites", data_dir=str(tmp_path))
    assert ds.images.shape == (12, 64, 64, 1) and ds.factor_sizes == (3, 6, 40, 32, 32)
    assert ds.factor_names == dsprites.FACTOR_NAMES
    assert ds.factors.shape == (12, 5) and (ds.factors < np.array(ds.factor_sizes)).all()
    shapes = load_dataset("tfds:shapes3d", data_dir=str(tmp_path))
    assert shapes.images.shape == (12, 64, 64, 3)
    assert shapes.factor_sizes == (10, 10, 10, 8, 4, 15)


def test_tfds_unprepared_says_what_to_run(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(FileNotFoundError, match="tfds build dsprites --file_format=array_record"):
    load_dataset("tfds:dsprites", data_dir=str(tmp_path))


# ------------------------------------------------------------ ground truth

def test_ground_truth_interface(tmp_path, monkeypatch):
  monkeypatch.setenv("BETATC_JAX_CACHE", str(tmp_path))
  ds = load_dataset("dsprites", subsample=(1, 2, 8, 4, 4))
  rng = np.random.default_rng(0)
  factors, images = ds.sample(50, rng)
  assert factors.shape == (50, 5) and (factors.max(0) < np.array(ds.factor_sizes)).all()
  rows = ds.index_of(factors)
  np.testing.assert_array_equal(ds.factors[rows], factors)
  np.testing.assert_array_equal(images, ds.images[rows])
  with pytest.raises(ValueError, match="out of range"):
    ds.index_of(np.array([[3, 0, 0, 0, 0]]))


def test_ground_truth_validation():
  images = np.zeros((4, 2, 2, 1), np.uint8)
  with pytest.raises(ValueError, match="uint8"):
    GroundTruthDataset(images.astype(np.float32), np.zeros((4, 1), np.int32), ("a",), (1,))
  with pytest.raises(ValueError, match="out of range"):
    GroundTruthDataset(images, np.full((4, 1), 2, np.int32), ("a",), (2,))
  ds = GroundTruthDataset(images, np.array([[0], [0], [1], [1]], np.int32), ("a",), (3,))
  with pytest.raises(ValueError, match="No image"):
    ds.index_of(np.array([[2]]))
