"""The official β-TCVAE training step, ported to current PyTorch for parity tests.

Follows rtqichen/beta-tcvae (Chen et al., 2018): ``vae_quant.py`` (``MLPEncoder``,
``MLPDecoder``, ``VAE.encode``/``decode``/``elbo``,
``VAE._log_importance_weight_matrix``, ``logsumexp``; ``main`` minimises
``−obj.mean()`` with ``optim.Adam(lr=1e-3)``, as ``torch_training.adam_steps``
does) and ``lib/dist.py`` (``Normal`` with
parameters (μ, log σ) on the last axis, ``Bernoulli`` with its eps = 1e-8).

What changed to run it today, and nothing else: no ``Variable``/``.cuda``;
``F.sigmoid`` -> ``torch.sigmoid``; only the paths ``python vae_quant.py
--dataset shapes --tcvae [--mss]`` takes (normal prior and posterior, MLP,
``include_mutinfo``, λ = 0, no annealing); and the posterior noise can be
passed in (``eps``), so a test can feed both implementations the same draws.
The ``--mss`` weight matrix keeps its strides, bug included.
"""

import math

import torch
from torch import nn

EPS = 1e-8      # lib/dist.py


class OfficialMLPVAE(nn.Module):
  """``VAE(z_dim, tcvae=True, conv=False, mss=mss)`` with its MLP encoder and decoder."""

  def __init__(self, z_dim=10, beta=6.0, mss=False):
    super().__init__()
    self.z_dim, self.beta, self.mss = z_dim, beta, mss
    self.encoder = nn.Module()
    self.encoder.fc1 = nn.Linear(4096, 1200)
    self.encoder.fc2 = nn.Linear(1200, 1200)
    self.encoder.fc3 = nn.Linear(1200, 2 * z_dim)
    self.encoder.conv_z = nn.Conv2d(64, 2 * z_dim, 4, 1, 0)   # defined there, never used
    self.decoder = nn.Module()
    self.decoder.net = nn.Sequential(
        nn.Linear(z_dim, 1200), nn.Tanh(), nn.Linear(1200, 1200), nn.Tanh(),
        nn.Linear(1200, 1200), nn.Tanh(), nn.Linear(1200, 4096))

  def encode_params(self, x):
    """x [B, 1, 64, 64] -> z_params [B, D, 2]: (μ, log σ) interleaved, as
    ``encoder.forward(x).view(B, z_dim, nparams)``."""
    h = x.view(-1, 64 * 64)
    h = torch.relu(self.encoder.fc1(h))
    h = torch.relu(self.encoder.fc2(h))
    return self.encoder.fc3(h).view(x.size(0), self.z_dim, 2)

  def decode_params(self, z):
    return self.decoder.net(z.view(z.size(0), -1)).view(z.size(0), 1, 64, 64)

  def _log_importance_weight_matrix(self, batch_size, dataset_size):
    n, m = dataset_size, batch_size - 1
    strat_weight = (n - m) / (n * m)
    w = torch.empty(batch_size, batch_size).fill_(1 / m)
    w.view(-1)[::m + 1] = 1 / n
    w.view(-1)[1::m + 1] = strat_weight
    w[m - 1, 0] = strat_weight
    return w.log()

  def loss(self, x, dataset_size, eps):
    """−mean(modified_elbo) of ``VAE.elbo`` (what ``main`` minimises), and
    its terms. x: [B, 1, 64, 64] floats; eps: [B, D] standard normal draws."""
    b = x.size(0)
    z_params = self.encode_params(x)
    mu, logsigma = z_params.select(-1, 0), z_params.select(-1, 1)
    zs = eps * torch.exp(logsigma) + mu
    x_params = self.decode_params(zs)
    logpx = bernoulli_log_density(x, x_params).view(b, -1).sum(1)
    logpz = normal_log_density(zs, torch.zeros_like(zs), torch.zeros_like(zs)).view(b, -1).sum(1)
    logqz_condx = normal_log_density(zs, mu, logsigma).view(b, -1).sum(1)
    _logqz = normal_log_density(zs.view(b, 1, self.z_dim), mu.view(1, b, self.z_dim),
                                logsigma.view(1, b, self.z_dim))
    if not self.mss:
      logqz_prodmarginals = (logsumexp(_logqz, dim=1) - math.log(b * dataset_size)).sum(1)
      logqz = logsumexp(_logqz.sum(2), dim=1) - math.log(b * dataset_size)
    else:
      logiw = self._log_importance_weight_matrix(b, dataset_size).type_as(_logqz)
      logqz = logsumexp(logiw + _logqz.sum(2), dim=1)
      logqz_prodmarginals = logsumexp(logiw.view(b, b, 1) + _logqz, dim=1).sum(1)
    modified_elbo = (logpx - (logqz_condx - logqz) - self.beta * (logqz - logqz_prodmarginals)
                     - (logqz_prodmarginals - logpz))
    terms = {"recon": -logpx.mean(), "mi": (logqz_condx - logqz).mean(),
             "tc": (logqz - logqz_prodmarginals).mean(),
             "dim_kl": (logqz_prodmarginals - logpz).mean()}
    return modified_elbo.mean().mul(-1), terms


def normal_log_density(sample, mu, logsigma):
  """lib/dist.py ``Normal.log_density``."""
  c = torch.tensor([math.log(2 * math.pi)], dtype=sample.dtype)
  tmp = (sample - mu) * torch.exp(-logsigma)
  return -0.5 * (tmp * tmp + 2 * logsigma + c)


def bernoulli_log_density(sample, logits):
  """lib/dist.py ``Bernoulli.log_density``, with its eps."""
  p = (torch.sigmoid(logits) + EPS) * (1 - 2 * EPS)
  return sample * torch.log(p + EPS) + (1 - sample) * torch.log(1 - p + EPS)


def logsumexp(value, dim):
  """vae_quant.py's ``logsumexp`` (keepdim=False)."""
  m, _ = torch.max(value, dim=dim, keepdim=True)
  return m.squeeze(dim) + torch.log(torch.sum(torch.exp(value - m), dim=dim))
