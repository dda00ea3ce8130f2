"""python -m betatc_jax.import_torch: PyTorch-VAE checkpoints in, end to end."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

import children
from betatc_jax import run as run_lib
from betatc_jax import state as state_lib
from betatc_jax import evaluate, import_torch, models
from configs import seed_celeba
from torch_reference import BetaTCVAE, assert_seed_conv_matches
from train_test import ROOT


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  base = tmp_path_factory.mktemp("import")
  rng = np.random.default_rng(0)
  folder = base / "faces"
  folder.mkdir()
  for i in range(24):
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
  torch.manual_seed(0)
  ref = BetaTCVAE(3, 10).eval()
  lightning = base / "last.ckpt"
  torch.save({"epoch": 9, "global_step": 25_440,
              "state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()}}, lightning)
  bare = base / "bare.pt"
  torch.save(ref.state_dict(), bare)
  return base, folder, ref, lightning, bare


def config_for(folder):
  config = seed_celeba.get_config()
  config.dataset.path, config.dataset.center_crop, config.dataset.max_images = str(folder), 0, 0
  config.batch_size, config.progress_bar, config.seed = 8, False, 0
  config.eval.num_samples, config.eval.num_images, config.eval.traversal_steps = 20, 4, 3
  return config


def assert_matches_torch(workdir, ref):
  config = evaluate.load_config(workdir)
  _, params = evaluate.restore_params(config, workdir, (64, 64, 3))
  model = models.VAE(arch="seed_conv", latent_dim=10, image_shape=(64, 64, 3),
                     output_activation="tanh")
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 1, (3, 3, 64, 64)).astype(np.float32)
  z = rng.normal(size=(3, 10)).astype(np.float32)
  assert_seed_conv_matches(ref, params, model, x, z, atol=1e-5)


@pytest.mark.long
def test_lightning_checkpoint_through_the_command_then_evaluate_and_fine_tune(setup):
  base, folder, ref, lightning, _ = setup
  workdir = base / "from_lightning"
  cmd = [sys.executable, "-m", "betatc_jax.import_torch", "--checkpoint", str(lightning),
         "--config", "configs/seed_celeba.py", "--workdir", str(workdir),
         f"--config.dataset.path={folder}", "--config.dataset.center_crop=0",
         "--config.dataset.max_images=0", "--config.batch_size=8", "--config.seed=0",
         "--config.eval.num_samples=20", "--config.eval.num_images=4",
         "--config.eval.traversal_steps=3", "--config.progress_bar=False"]
  result = children.run(cmd, cwd=ROOT, watch=[workdir])
  assert result.returncode == 0, result.stderr[-3000:]
  assert_matches_torch(workdir, ref)
  out = evaluate.evaluate_workdir(workdir)
  assert out["step"] == 0 and out["mig"] is None and np.isfinite(out["tc"])
  assert (workdir / "traversals.png").is_file()
  config = evaluate.load_config(workdir)
  config.num_train_steps, config.log_every_steps, config.checkpoint_every_steps = 2, 1, 2
  state = run_lib.train_run(config, str(workdir))          # fine-tunes from the imported weights
  assert int(state.step) == 2


def test_bare_state_dict(setup):
  base, folder, ref, _, bare = setup
  workdir = import_torch.import_checkpoint(bare, config_for(folder), base / "from_bare")
  assert_matches_torch(workdir, ref)


def test_bad_checkpoints_are_named_errors(setup, tmp_path):
  base, folder, _, _, bare = setup
  config = config_for(folder)
  other = tmp_path / "other.pt"
  torch.save(BetaTCVAE(3, 10, hidden_dims=[16, 16, 16, 16]).state_dict(), other)
  with pytest.raises(ValueError, match=r"does not fit the config's model.*conv_0.*kernel"):
    import_torch.import_checkpoint(other, config, tmp_path / "w1")
  extra = tmp_path / "extra.pt"
  torch.save({**BetaTCVAE(3, 10).state_dict(), "classifier.weight": torch.zeros(2, 2)}, extra)
  with pytest.raises(ValueError, match=r"Unexpected keys.*classifier.weight"):
    import_torch.import_checkpoint(extra, config, tmp_path / "w2")
  partial = tmp_path / "partial.pt"
  torch.save({k: v for k, v in BetaTCVAE(3, 10).state_dict().items() if k != "fc_mu.weight"},
             partial)
  with pytest.raises(ValueError, match="missing.*fc_mu.weight"):
    import_torch.import_checkpoint(partial, config, tmp_path / "w3")
  text = tmp_path / "notes.ckpt"
  text.write_text("not a checkpoint")
  with pytest.raises(ValueError, match="not a readable torch checkpoint"):
    import_torch.import_checkpoint(text, config, tmp_path / "w4")
  with pytest.raises(FileNotFoundError, match="No checkpoint file"):
    import_torch.import_checkpoint(tmp_path / "missing.ckpt", config, tmp_path / "w5")
  with pytest.raises(ValueError, match="already has checkpoints"):
    import_torch.import_checkpoint(bare, config, base / "from_bare_again") and \
        import_torch.import_checkpoint(bare, config, base / "from_bare_again")
  assert not any((tmp_path / f"w{i}").exists() for i in range(1, 6))


def test_official_checkpoint_imports_into_the_official_mode(tmp_path):
  """checkpt-0000.pth as the official code saves it ({"state_dict", "args"})
  into configs/dsprites_paper.py: our encoder and decoder then give the
  official model's (μ, log σ) and logits; a log-variance head is refused."""
  import argparse

  from configs import dsprites_paper
  from official_reference import OfficialMLPVAE
  torch.manual_seed(2)
  ref = OfficialMLPVAE(10).eval()
  path = tmp_path / "checkpt-0000.pth"
  torch.save({"state_dict": ref.state_dict(), "args": argparse.Namespace(beta=6, tcvae=True)},
             path)
  config = dsprites_paper.get_config()
  workdir = import_torch.import_checkpoint(path, config, tmp_path / "official")
  _, params = evaluate.restore_params(evaluate.load_config(workdir), workdir, (64, 64, 1))
  model = state_lib.make_model(config, (64, 64, 1))
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(4, 64, 64, 1)) < 0.2).astype(np.float32)
  z = rng.normal(size=(4, 10)).astype(np.float32)
  mu, logvar = model.apply({"params": params}, x, method="encode")
  logits = model.apply({"params": params}, z, method="decode")
  with torch.no_grad():
    z_params = ref.encode_params(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    want_logits = ref.decode_params(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(mu, z_params[..., 0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logvar, 2 * z_params[..., 1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
  config.model.posterior_scale = "log_var"
  with pytest.raises(ValueError, match="posterior_scale='log_sigma'"):
    import_torch.import_checkpoint(path, config, tmp_path / "w")
