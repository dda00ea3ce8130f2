"""PNG figures (host side): reconstructions, prior samples, latent traversals."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from betatc_jax import models  # noqa: E402
from betatc_jax.data.ground_truth import GroundTruthDataset  # noqa: E402


def image_grid(images: np.ndarray, pad: int = 1) -> np.ndarray:
  """Tiles images [R, C, H, W, ch] (floats in [0, 1]) into one [R·(H+p)+p, C·(W+p)+p, ch]
  image with white separators."""
  rows, cols, h, w, ch = images.shape
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, ch), np.float32)
  for r in range(rows):
    for c in range(cols):
      top, left = pad + r * (h + pad), pad + c * (w + pad)
      grid[top:top + h, left:left + w] = images[r, c]
  return grid


def save_grid(path: pathlib.Path, images: np.ndarray, row_labels: list[str] | None = None
              ) -> None:
  """Saves image_grid(images) as a PNG (grayscale for one channel), with
  ``row_labels`` (one per row of images) on the left if given."""
  grid = np.clip(image_grid(np.asarray(images, np.float32)), 0.0, 1.0)
  gray = grid.shape[-1] == 1
  if row_labels is None:
    plt.imsave(path, grid[..., 0] if gray else grid, **({"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
                                                         if gray else {}))
    return
  if len(row_labels) != images.shape[0]:
    raise ValueError(f"{len(row_labels)} row labels for {images.shape[0]} rows")
  height, width = grid.shape[:2]
  fig = plt.figure(figsize=(width / 100 + 1.1, height / 100), dpi=100)
  ax = fig.add_axes((1.1 / (width / 100 + 1.1), 0, 1 - 1.1 / (width / 100 + 1.1), 1))
  ax.imshow(grid[..., 0] if gray else grid, cmap="gray" if gray else None, vmin=0.0, vmax=1.0,
            interpolation="nearest")
  rows = images.shape[0]
  ax.set_yticks((np.arange(rows) + 0.5) * height / rows, row_labels, fontsize=7)
  ax.set_xticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def traversal_labels(latents: np.ndarray, kl_per_dim: np.ndarray | None) -> list[str]:
  """Row labels of a traversal: ``z<j>`` and, when known, its KL to the prior."""
  return [f"z{j}" + (f"  KL {kl_per_dim[j]:.2f}" if kl_per_dim is not None else "")
          for j in latents]


def _to_unit(decoder_out: jax.Array, likelihood: str) -> np.ndarray:
  """Decoder output -> images in [0, 1]."""
  return np.asarray(models.mean_image(decoder_out, likelihood))


def _eval_images(dataset: GroundTruthDataset, config) -> jax.Array:
  """The fixed images of the figures: [num_images, H, W, C] floats in [0, 1]."""
  rng = np.random.default_rng(config.seed)
  rows = np.sort(rng.choice(len(dataset), config.eval.num_images, replace=False))
  return jnp.asarray(dataset.images[rows], jnp.float32) / 255.0


def save_traversals(path: pathlib.Path, model: models.VAE, params, dataset: GroundTruthDataset,
                    config, latent_order: np.ndarray | None = None,
                    kl_per_dim: np.ndarray | None = None) -> None:
  """Row j sweeps z_j over [−r, r] from the posterior mean of one image, the
  other latents fixed; rows in ``latent_order`` (default: j = 0, 1, …),
  each labelled ``z<j>`` with its KL (nats, from ``kl_per_dim``) when given."""
  variables = {"params": params}
  mu, _ = model.apply(variables, _eval_images(dataset, config)[:1], method="encode")
  d, steps, r = config.model.latent_dim, config.eval.traversal_steps, config.eval.traversal_range
  z = jnp.tile(mu, (d * steps, 1)).reshape(d, steps, d)
  sweep = jnp.linspace(-r, r, steps)
  z = z.at[jnp.arange(d), :, jnp.arange(d)].set(jnp.broadcast_to(sweep, (d, steps)))
  images = _to_unit(model.apply(variables, z.reshape(d * steps, d), method="decode"),
                    config.objective.likelihood)
  grid = images.reshape((d, steps) + images.shape[1:])
  order = np.arange(d) if latent_order is None else np.asarray(latent_order)
  save_grid(path, grid[order], row_labels=traversal_labels(order, kl_per_dim))


def write_training_pngs(workdir: pathlib.Path, model: models.VAE, params, dataset: GroundTruthDataset,
                        config, key: jax.Array) -> list[pathlib.Path]:
  """Writes reconstructions.png (inputs above reconstructions), samples.png
  (decoded z ~ N(0, I)) and traversals.png (``save_traversals``).

  Returns:
    The paths written.
  """
  workdir = pathlib.Path(workdir)
  likelihood = config.objective.likelihood
  x = _eval_images(dataset, config)
  variables = {"params": params}
  paths = [workdir / "reconstructions.png", workdir / "samples.png", workdir / "traversals.png"]
  recon = _to_unit(model.apply(variables, x, method="reconstruct"), likelihood)
  save_grid(paths[0], np.stack([np.asarray(x), recon]))
  samples = _to_unit(model.apply(variables, key, 8 * 8, method="sample"), likelihood)
  save_grid(paths[1], samples.reshape((8, 8) + samples.shape[1:]))
  save_traversals(paths[2], model, params, dataset, config)
  return paths


def save_latent_vs_factor(path: pathlib.Path, mu: np.ndarray, dataset: GroundTruthDataset,
                          latents: np.ndarray) -> None:
  """The paper's latent-vs-factor figure: E[mu_j | v_k = v] against v, one
  row per (active) latent j, one column per factor k, ±1 std shaded."""
  latents = np.asarray(latents) if len(latents) else np.arange(mu.shape[1])
  k_count = dataset.num_factors
  fig, axes = plt.subplots(len(latents), k_count, figsize=(2.2 * k_count, 1.6 * len(latents)),
                           squeeze=False, sharey="row")
  for k in range(k_count):
    labels = dataset.factors[:, k]
    counts = np.maximum(np.bincount(labels, minlength=dataset.factor_sizes[k]), 1)
    for row, j in enumerate(latents):
      mean = np.bincount(labels, mu[:, j], dataset.factor_sizes[k]) / counts
      sq = np.bincount(labels, mu[:, j] ** 2, dataset.factor_sizes[k]) / counts
      std = np.sqrt(np.maximum(sq - mean ** 2, 0))
      ax = axes[row, k]
      v = np.arange(dataset.factor_sizes[k])
      ax.plot(v, mean, lw=1.5)
      ax.fill_between(v, mean - std, mean + std, alpha=0.25)
      if row == 0:
        ax.set_title(dataset.factor_names[k], fontsize=9)
      if k == 0:
        ax.set_ylabel(f"z{j}", fontsize=9)
      ax.tick_params(labelsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
