"""dSprites and 3D Shapes through tensorflow-datasets (the ``tfds`` extra).

Uses ``tfds.data_source`` (random access over array_record files), which
needs no TensorFlow. The data must be prepared beforehand: this module never
downloads.
"""

from __future__ import annotations

import numpy as np

from betatc_jax.data.ground_truth import GroundTruthDataset

# tfds name -> the label features that are our factors, in grid order.
TFDS_FACTORS = {
    "dsprites": ("label_shape", "label_scale", "label_orientation",
                 "label_x_position", "label_y_position"),
    "shapes3d": ("label_floor_hue", "label_wall_hue", "label_object_hue",
                 "label_scale", "label_shape", "label_orientation"),
}
_CHUNK = 4096


def _read_all(source, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
  n = len(source)
  first = source[0]
  images = np.empty((n,) + first["image"].shape, np.uint8)
  factors = np.empty((n, len(keys)), np.int32)
  for start in range(0, n, _CHUNK):
    idx = list(range(start, min(n, start + _CHUNK)))
    try:
      examples = source.__getitems__(idx)
    except TypeError:  # some sources (e.g. tfds' mocks) only read one at a time
      examples = [source[i] for i in idx]
    for row, ex in zip(idx, examples):
      images[row] = ex["image"]
      factors[row] = [ex[k] for k in keys]
  return images, factors


def load_tfds(name: str, data_dir: str | None = None, split: str = "train") -> GroundTruthDataset:
  """Loads a prepared tfds ground-truth dataset into memory.

  Args:
    name: ``"dsprites"`` or ``"shapes3d"``.
    data_dir: the tfds data dir (default: tfds' own, ~/tensorflow_datasets).
    split: the split to read.

  Returns:
    A GroundTruthDataset with uint8 images in [0, 255].

  Raises:
    ImportError: without tensorflow-datasets installed.
    FileNotFoundError: if the dataset is not prepared, with the command to
      prepare it.
  """
  if name not in TFDS_FACTORS:
    raise ValueError(f"Unknown tfds dataset {name!r}; expected one of {sorted(TFDS_FACTORS)}.")
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError("tfds datasets need tensorflow-datasets: pip install 'betatc-jax[tfds]'.") from e
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types for "not prepared"
    where = data_dir or "~/tensorflow_datasets"
    raise FileNotFoundError(
        f"tfds dataset {name!r} is not prepared as array_record in {where} ({e.__class__.__name__}). "
        "Prepare it once on a machine with network access:\n"
        f"  pip install tensorflow tensorflow-datasets && tfds build {name} "
        f"--file_format=array_record --data_dir={where}\n"
        "then copy that directory here, and pass it as dataset.data_dir.") from e
  keys = TFDS_FACTORS[name]
  images, factors = _read_all(source, list(keys))
  if images.max(initial=0) <= 1:  # dSprites stores 0/1 pixels
    images *= np.uint8(255)
  features = tfds.builder(name, data_dir=data_dir).info.features
  sizes = tuple(int(features[k].num_classes) for k in keys)
  names = tuple(k.removeprefix("label_") for k in keys)
  if name == "dsprites":
    names = ("shape", "scale", "orientation", "pos_x", "pos_y")
  return GroundTruthDataset(images=images, factors=factors, factor_names=names,
                            factor_sizes=sizes, name=f"tfds:{name}/{split}")
