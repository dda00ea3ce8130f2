"""configs/seed_celeba.py trains as AntixK PyTorch-VAE's betatc_vae.py does
(tests/torch_reference.py), step for step, and from its own initialisation.

On a folder of smooth synthetic photos (CelebA-sized, centre-cropped to 148
and resized to 64, as the config does), from the PyTorch model's initial
weights, the same (flipped) batches and the same noise: the loss ("reference"
layout), its terms, the gradients and the parameters after each of K = 7
Adam steps at lr 0.005 and the seed's B = 64, with the per-epoch decay ×0.95
after steps 3 and 6 (an epoch of 160 images): the loss and terms to rtol 2e-5, gradients
to 1e-4 of each tensor's largest, parameters to ``torch_training.adam_tolerance``
with a gradient error of 1e-5 · max |g|; free-running, the losses of the
7 steps to rtol 5e-3 (at lr 0.005 Adam amplifies rounding: 1.7e-3 measured).
Then 200 steps of the config itself train with a
finite loss.
"""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="the parity test needs torch (the 'test' extra)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from betatc_jax import run as run_lib
from betatc_jax import state as state_lib
from betatc_jax import step as step_lib
from betatc_jax.data import dataset_from_config
from betatc_jax import torch_compat  # noqa: E402
from configs import seed_celeba  # noqa: E402
from torch_reference import BetaTCVAE  # noqa: E402
from torch_training import adam_steps, assert_synced_parity, free_steps  # noqa: E402

STEPS, BATCH, IMAGES = 7, 64, 160


def smooth_photos(folder, count, rng, size=(178, 218)):
  """``count`` CelebA-sized RGB images: a bicubic upsampling of a random 5×6
  colour grid (smooth, like a photo's low frequencies) plus a bright blob."""
  folder.mkdir()
  yy, xx = np.mgrid[:size[1], :size[0]]
  for i in range(count):
    grid = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    image = np.asarray(grid.resize(size, Image.BICUBIC), np.float32)
    cy, cx, r = rng.uniform(40, 180), rng.uniform(40, 140), rng.uniform(10, 40)
    image = image + 80 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg")
  return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  return smooth_photos(tmp_path_factory.mktemp("photos") / "img", IMAGES,
                       np.random.default_rng(0))


def photo_config(folder):
  config = seed_celeba.get_config()
  config.dataset.path, config.batch_size, config.progress_bar = str(folder), BATCH, False
  return config


def to_ours(arrays):
  return jax.tree.map(jnp.asarray, torch_compat.params_from_torch_state_dict(arrays))


def test_train_step_equals_the_seeds_step(photos):
  config = photo_config(photos)
  dataset = dataset_from_config(config)
  assert dataset.images.shape == (IMAGES, 64, 64, 3)
  torch.manual_seed(config.seed)
  ref = BetaTCVAE(3, 10, anneal_steps=config.objective.anneal_steps).train()
  state0 = state_lib.create_train_state(config, None, (64, 64, 3), IMAGES,
                                        params=to_ours(ref.state_dict()))
  key = jax.random.key(5)
  rng = np.random.default_rng(1)
  batches = [dataset.images[rng.choice(IMAGES, BATCH, replace=False)] for _ in range(STEPS)]
  # The images each step trains on (flipped on the device) and its noise.
  x = [np.asarray(step_lib.step_inputs(state0.replace(step=jnp.int32(t)), b, key)[0])
       .transpose(0, 3, 1, 2) for t, b in enumerate(batches)]
  eps = [np.asarray(jax.random.normal(jax.random.fold_in(key, t), (BATCH, 10)))
         for t in range(STEPS)]

  def seed_loss(model, x, e):   # BetaTCVAE.forward with the noise given, then loss_function
    mu, logvar = model.encode(x)
    z = e * torch.exp(0.5 * logvar) + mu
    out = model.loss_function(model.decode(z), x, mu, logvar, z, M_N=BATCH / IMAGES)
    return out["loss"], {"recon": out["Reconstruction_Loss"] / BATCH, "mi": out["MI_Loss"],
                         "tc": out["TC_Loss"], "dim_kl": out["KLD"]}

  epoch = -(-IMAGES // BATCH)
  theirs = adam_steps(ref, seed_loss, x, eps, lambda t: 0.005 * 0.95 ** (t // epoch))
  kept = assert_synced_parity(state0, batches, key, theirs, to_ours)
  assert kept[-1][0] == pytest.approx(0.005 * 0.95 ** 2)     # the decay was crossed
  # Free-running, the two trajectories drift apart by Adam's amplification of
  # rounding at lr 0.005 (measured: 1.7e-3 in the loss by step 3); each step
  # itself is equal (above).
  np.testing.assert_allclose(free_steps(state0, batches, key), [loss for _, loss in kept],
                             rtol=5e-3)


@pytest.mark.long
def test_seed_config_trains_200_steps_from_its_init(photos, tmp_path):
  """The config as it is (the seed's init, B = 64, lr 0.005, seed 1265) on
  the photos: 200 steps, every logged loss finite, the reconstruction
  improved. (At B = 16 on 80 such photos the PyTorch seed itself diverges:
  tests/seed_stability.py.)"""
  config = photo_config(photos)
  config.num_train_steps, config.log_every_steps, config.checkpoint_every_steps = 200, 20, 200
  config.eval.at_end = False
  run_lib.train_run(config, str(tmp_path / "run"))
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(20, 201, 20))
  assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in rows)
  assert rows[-1]["recon"] < 0.5 * rows[0]["recon"]
