"""Training throughput, JAX vs the PyTorch reference, side by side.

For each arch in {seed_conv, mlp} and batch in {64, 256}: one full train
step (forward, β-TCVAE MSS loss, backward, Adam) of the same model, loss and
optimizer in JAX (``step_lib.train_step``) and in PyTorch (the seed's
network from tests/torch_reference.py, or the paper's MLP, with the same
MSS estimator written in torch), interleaved, after warm-up; medians.

  python benchmarks/train_throughput.py           # 5 repeats of 3 steps
  python benchmarks/train_throughput.py --quick   # 2 repeats of 2 steps (~3 min)
  python benchmarks/train_throughput.py --malloc both   # both allocator settings

Prints a table and `ratio seed_conv/64=X mlp/64=X seed_conv/256=X mlp/256=X`
(JAX img/s ÷ PyTorch img/s, JAX with its default ``conv_impl="auto"``, the
matmul convolutions on CPU). For seed_conv the table also has JAX with
``conv_impl="lax"`` (XLA's native convolutions), measured in the same
interleaving. torch uses as many threads as there are cores.

``--malloc`` picks glibc's allocator setting, which applies to the whole
process, so to JAX and PyTorch alike: ``default`` (glibc's defaults, as a
plain ``python`` process has them), ``retain``
(``betatc_jax.host_memory.retain_freed_memory()``, as ``train.py`` runs), or
``both`` (one subprocess each, both tables).
"""

import argparse
import math
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from betatc_jax import host_memory  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--malloc", choices=("default", "retain", "both"), default="default")
  return parser.parse_args(argv)


# Parsed before JAX and torch are imported: the allocator setting must come
# before they start their threads.
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.malloc == "retain":
  host_memory.retain_freed_memory()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from betatc_jax import state as state_lib  # noqa: E402
from betatc_jax import step as step_lib  # noqa: E402

from configs import default  # noqa: E402
from torch_reference import BetaTCVAE  # noqa: E402

N = 737_280


def torch_mss_terms(z, mu, logvar, n):
  """The MSS decomposition in torch (the same formulas as estimators.py)."""
  b = z.shape[0]
  m = b - 1
  lq = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar[None]))
  w = torch.full((b, b), 1.0 / m)
  idx = torch.arange(b)
  w[idx, (idx + 1) % b] = (n - m) / (n * m)
  w[idx, idx] = 1.0 / n
  log_w = w.log()
  log_q_z = torch.logsumexp(lq.sum(-1) + log_w, 1)
  log_prod = torch.logsumexp(lq + log_w[..., None], 1).sum(-1)
  log_q_zx = (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))).sum(-1)
  log_p_z = (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(-1)
  return (log_q_zx - log_q_z).mean(), (log_q_z - log_prod).mean(), (log_prod - log_p_z).mean()


class TorchMLP(torch.nn.Module):
  def __init__(self, d=10):
    super().__init__()
    self.enc = torch.nn.Sequential(torch.nn.Linear(4096, 1200), torch.nn.ReLU(), torch.nn.Linear(1200, 1200),
                                   torch.nn.ReLU(), torch.nn.Linear(1200, 2 * d))
    self.dec = torch.nn.Sequential(torch.nn.Linear(d, 1200), torch.nn.Tanh(), torch.nn.Linear(1200, 1200),
                                   torch.nn.Tanh(), torch.nn.Linear(1200, 1200), torch.nn.Tanh(),
                                   torch.nn.Linear(1200, 4096))
    self.d = d

  def forward(self, x):
    out = self.enc(x.reshape(len(x), -1))
    mu, logvar = out[:, :self.d], out[:, self.d:]
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return self.dec(z).reshape(x.shape), mu, logvar, z


def torch_step_fn(arch, batch):
  model = TorchMLP() if arch == "mlp" else BetaTCVAE(1, 10)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.from_numpy((np.random.default_rng(0).uniform(size=(batch, 1, 64, 64)) > 0.8).astype(np.float32))

  def step():
    opt.zero_grad()
    if arch == "mlp":
      out, mu, logvar, z = model(x)
      recon = torch.nn.functional.binary_cross_entropy_with_logits(out, x, reduction="sum") / batch
    else:
      out, _, mu, logvar, z = model(x)
      recon = ((out - x) ** 2).sum() / batch
    mi, tc, dim_kl = torch_mss_terms(z, mu, logvar, N)
    loss = recon + mi + 6 * tc + dim_kl
    loss.backward()
    opt.step()
    return loss.item()
  return step


def jax_step_fn(arch, batch, conv_impl="auto"):
  config = default.get_config()
  config.model.arch = arch
  config.model.conv_impl = conv_impl
  config.batch_size = batch
  config.objective.estimator = "mss"        # what the torch step computes
  if arch == "seed_conv":
    config.model.output_activation = "tanh"
    config.objective.likelihood = "gaussian"
  state = state_lib.create_train_state(config, jax.random.key(0), (64, 64, 1), N)
  step_fn = jax.jit(step_lib.train_step, donate_argnums=0)
  x = jnp.asarray(((np.random.default_rng(0).uniform(size=(batch, 64, 64, 1)) > 0.8) * 255).astype(np.uint8))
  key = jax.random.key(1)
  holder = [state]

  def step():
    holder[0], metrics = step_fn(holder[0], x, key)
    return float(metrics["loss"])
  return step


def images_per_sec(step, batch, steps):
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return batch * steps / (time.perf_counter() - t)


def measure(quick: bool) -> dict[str, float]:
  """Runs every case interleaved; prints the table; returns the ratios."""
  repeats, steps = (2, 2) if quick else (5, 3)
  torch.set_num_threads(os.cpu_count())
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), repeats={repeats} steps={steps}")
  print(f"{'case':<16}{'JAX img/s':>12}{'PyTorch img/s':>15}{'ratio':>8}{'JAX lax img/s':>15}")
  ratios = {}
  for batch in (64, 256):
    for arch in ("seed_conv", "mlp"):
      fns = {"jax": jax_step_fn(arch, batch), "torch": torch_step_fn(arch, batch)}
      if arch == "seed_conv":
        fns["lax"] = jax_step_fn(arch, batch, "lax")
      for fn in fns.values():
        fn()                                    # warm-up (and compile)
      results = {name: [] for name in fns}
      for _ in range(repeats):                  # interleaved
        for name, fn in fns.items():
          results[name].append(images_per_sec(fn, batch, steps))
      jm, tm = np.median(results["jax"]), np.median(results["torch"])
      lax_col = f"{np.median(results['lax']):>15.0f}" if "lax" in results else f"{'':>15}"
      ratios[f"{arch}/{batch}"] = jm / tm
      print(f"{arch + '/' + str(batch):<16}{jm:>12.0f}{tm:>15.0f}{jm / tm:>8.2f}{lax_col}", flush=True)
  return ratios


CASES = ("seed_conv/64", "mlp/64", "seed_conv/256", "mlp/256")


def ratio_line(ratios: dict[str, float]) -> str:
  return "ratio " + " ".join(f"{k}={ratios[k]:.2f}" for k in CASES)


def main(args: argparse.Namespace):
  if args.malloc == "both":
    lines = {}
    for setting in ("default", "retain"):
      print(f"== --malloc {setting}", flush=True)
      out = subprocess.run([sys.executable, __file__, "--malloc", setting] +
                           (["--quick"] if args.quick else []),
                           check=True, capture_output=True, text=True).stdout
      print(out, end="", flush=True)
      lines[setting] = [line for line in out.splitlines() if line.startswith("ratio ")][-1]
    print(f"retain: {lines['retain']}")
    print(lines["default"])
    return
  print(f"malloc: {args.malloc}")
  print(ratio_line(measure(args.quick)))


if __name__ == "__main__":
  main(ARGS)
