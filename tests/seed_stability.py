"""Does AntixK PyTorch-VAE's BetaTCVAE (tests/torch_reference.py) train with
its own recipe on smooth synthetic photos? A measurement, not a test:

  python tests/seed_stability.py --batch_size 16 --images 80
  python tests/seed_stability.py --batch_size 64 --images 160

200 steps of the PyTorch seed from ``torch.manual_seed(1265)`` (its config's
seed), Adam at lr 0.005 with ×0.95 per epoch, random flips, the photos of
``seed_parity_test.smooth_photos`` through configs/seed_celeba.py's
transform; then the same config in betatc_jax from PyTorch's init and from
flax's. Prints each one's loss every 40 steps, or the step it exploded at.
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from betatc_jax import run as run_lib
from betatc_jax import loop
from betatc_jax.data import dataset_from_config
from betatc_jax.data import pipeline  # noqa: E402
from seed_parity_test import photo_config, smooth_photos  # noqa: E402
from torch_reference import BetaTCVAE  # noqa: E402


def torch_seed_losses(dataset, batch_size, steps, seed=1265):
  """The PyTorch seed's loss every 40 steps, stopping where it explodes."""
  n = len(dataset)
  torch.manual_seed(seed)
  ref = BetaTCVAE(3, 10, anneal_steps=10_000).train()
  optimizer = torch.optim.Adam(ref.parameters(), lr=0.005)
  epoch, out = -(-n // batch_size), []
  for t in range(steps):
    for group in optimizer.param_groups:
      group["lr"] = 0.005 * 0.95 ** (t // epoch)
    x = dataset.images[pipeline.batch_indices(seed, t, batch_size, n)]
    x = torch.from_numpy(x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    x = torch.where((torch.rand(batch_size) < 0.5)[:, None, None, None], x.flip(-1), x)
    loss = ref.loss_function(*ref(x), M_N=batch_size / n)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if not np.isfinite(loss.item()) or loss.item() > 1e8:
      return out + [(t + 1, f"exploded: {loss.item():.3g}")]
    if (t + 1) % 40 == 0:
      out.append((t + 1, round(loss.item(), 1)))
  return out


def ours_losses(folder, batch_size, steps, init, workdir):
  config = photo_config(folder)
  config.batch_size, config.model.param_init = batch_size, init
  config.num_train_steps, config.log_every_steps = steps, 40
  config.checkpoint_every_steps, config.eval.at_end = steps, False
  try:
    run_lib.train_run(config, str(workdir))
    end = None
  except loop.NonFiniteLossError as e:
    end = str(e).split(" (")[0]
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()] \
      if (workdir / "metrics.jsonl").is_file() else []
  return [(r["step"], round(r["loss"], 1)) for r in rows] + ([end] if end else [])


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--images", type=int, default=160)
  parser.add_argument("--steps", type=int, default=200)
  args = parser.parse_args()
  root = pathlib.Path(tempfile.mkdtemp(prefix="seed_stability_"))
  try:
    folder = smooth_photos(root / "img", args.images, np.random.default_rng(0))
    dataset = dataset_from_config(photo_config(folder))
    print("PyTorch seed:", torch_seed_losses(dataset, args.batch_size, args.steps), flush=True)
    for init in ("torch", "flax"):
      print(f"betatc_jax, param_init={init}:",
            ours_losses(folder, args.batch_size, args.steps, init, root / init), flush=True)
  finally:
    shutil.rmtree(root)
  return 0


if __name__ == "__main__":
  sys.exit(main())
