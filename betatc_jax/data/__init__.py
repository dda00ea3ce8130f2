"""Ground-truth datasets and the input pipeline.

``load_dataset(name, **options)``:

* ``"dsprites"``: procedural dSprites (offline, the default);
  options ``subsample`` (a step per factor) and ``use_cache``. With
  ``path=...``: DeepMind's .npz file instead.
* ``"tfds:dsprites"``, ``"tfds:shapes3d"``: through tensorflow-datasets;
  options ``data_dir``, ``split``.
* ``"images"``: every JPEG/PNG under ``path``, no factors
  (``images.image_folder``: ``image_size``, ``center_crop``, ``channels``,
  ``max_images``, ``subsample``, ``skip_bad``, ``use_cache``).

``dataset_from_config(config)`` loads what a training config's
``dataset.*`` keys name.
"""

from __future__ import annotations

from typing import Any

from betatc_jax.data.ground_truth import GroundTruthDataset

DATASETS = ("dsprites", "tfds:dsprites", "tfds:shapes3d", "images")
_OPTIONS = {"dsprites": {"path", "subsample", "use_cache"},
            "images": {"path", "image_size", "center_crop", "channels", "max_images", "subsample",
                       "skip_bad", "use_cache", "num_workers", "progress"},
            "tfds:dsprites": {"data_dir", "split"},
            "tfds:shapes3d": {"data_dir", "split"}}


def load_dataset(name: str, **options: Any) -> GroundTruthDataset:
  """Loads a ground-truth dataset by name (see the module docstring).

  Raises:
    ValueError: for an unknown name or option.
    FileNotFoundError: for a missing file or unprepared tfds data.
  """
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; expected one of {DATASETS}.")
  unknown = set(options) - _OPTIONS[name]
  if unknown:
    raise ValueError(f"Unknown option(s) {sorted(unknown)} for dataset {name!r}; "
                     f"expected some of {sorted(_OPTIONS[name])}.")
  if name == "dsprites":
    from betatc_jax.data import dsprites
    path = options.pop("path", None)
    if path:
      if options:
        raise ValueError(f"Options {sorted(options)} do not apply to the dSprites npz file.")
      return dsprites.dsprites_from_npz(path)
    return dsprites.procedural_dsprites(**options)
  if name == "images":
    from betatc_jax.data import images
    if "path" not in options:
      raise ValueError("The 'images' dataset needs path=<folder of JPEG/PNG files>.")
    return images.image_folder(**options)
  from betatc_jax.data import tfds_source
  return tfds_source.load_tfds(name.split(":", 1)[1], **options)


def dataset_from_config(config: Any) -> GroundTruthDataset:
  """Loads the dataset the config names, with only the options that apply."""
  d = config.dataset
  if d.name == "dsprites":
    options = {"path": d.path} if d.path else {"subsample": tuple(d.subsample)}
  elif d.name == "images":
    if not d.path:
      raise ValueError("dataset.name='images' needs dataset.path, a folder of JPEG/PNG files.")
    options = {"path": d.path, "image_size": d.image_size, "center_crop": d.center_crop or None,
               "channels": d.channels, "max_images": d.max_images or None, "subsample": d.every,
               "skip_bad": d.skip_bad, "progress": config.progress_bar}
  else:
    options = {"split": d.split, **({"data_dir": d.data_dir} if d.data_dir else {})}
  return load_dataset(d.name, **options)


def check_holds_a_batch(dataset: GroundTruthDataset, batch_size: int) -> None:
  """Raises ValueError when ``dataset`` has fewer images than one batch."""
  if len(dataset) < batch_size:
    raise ValueError(f"The dataset has {len(dataset)} images, fewer than batch_size "
                     f"{batch_size}.")


__all__ = ["DATASETS", "GroundTruthDataset", "load_dataset", "dataset_from_config",
           "check_holds_a_batch"]
