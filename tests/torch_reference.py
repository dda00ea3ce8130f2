"""The seed (AntixK's PyTorch-VAE ``BetaTCVAE``), ported for parity tests.

Only the fixes it needs to run were made: ``super().__init__()``, the
``anneal_steps`` argument name, the output channels (the seed hard-codes 3)
and a copy of ``hidden_dims`` before it is reversed. The estimator, including
its column-layout importance weights, is the seed's, unchanged.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


class BetaTCVAE(nn.Module):
  num_iter = 0

  def __init__(self, in_channels, latent_dim, hidden_dims=None, anneal_steps=200,
               alpha=1., beta=6., gamma=1.):
    super().__init__()
    self.latent_dim = latent_dim
    self.anneal_steps = anneal_steps
    self.alpha = alpha
    self.beta = beta
    self.gamma = gamma
    out_channels = in_channels
    hidden_dims = list(hidden_dims or [32, 32, 32, 32])

    modules = []
    for h_dim in hidden_dims:
      modules.append(nn.Sequential(
          nn.Conv2d(in_channels, out_channels=h_dim, kernel_size=4, stride=2, padding=1),
          nn.LeakyReLU()))
      in_channels = h_dim
    self.encoder = nn.Sequential(*modules)
    self.fc = nn.Linear(hidden_dims[-1] * 16, 256)
    self.fc_mu = nn.Linear(256, latent_dim)
    self.fc_var = nn.Linear(256, latent_dim)

    modules = []
    self.decoder_input = nn.Linear(latent_dim, 256 * 2)
    hidden_dims.reverse()
    for i in range(len(hidden_dims) - 1):
      modules.append(nn.Sequential(
          nn.ConvTranspose2d(hidden_dims[i], hidden_dims[i + 1], kernel_size=3, stride=2,
                             padding=1, output_padding=1),
          nn.LeakyReLU()))
    self.decoder = nn.Sequential(*modules)
    self.final_layer = nn.Sequential(
        nn.ConvTranspose2d(hidden_dims[-1], hidden_dims[-1], kernel_size=3, stride=2,
                           padding=1, output_padding=1),
        nn.LeakyReLU(),
        nn.Conv2d(hidden_dims[-1], out_channels=out_channels, kernel_size=3, padding=1),
        nn.Tanh())

  def encode(self, input):
    result = self.encoder(input)
    result = torch.flatten(result, start_dim=1)
    result = self.fc(result)
    return [self.fc_mu(result), self.fc_var(result)]

  def decode(self, z):
    result = self.decoder_input(z)
    result = result.view(-1, 32, 4, 4)
    result = self.decoder(result)
    return self.final_layer(result)

  def reparameterize(self, mu, logvar):
    std = torch.exp(0.5 * logvar)
    return torch.randn_like(std) * std + mu

  def forward(self, input, **kwargs):
    mu, log_var = self.encode(input)
    z = self.reparameterize(mu, log_var)
    return [self.decode(z), input, mu, log_var, z]

  def log_density_gaussian(self, x, mu, logvar):
    norm = - 0.5 * (math.log(2 * math.pi) + logvar)
    return norm - 0.5 * ((x - mu) ** 2 * torch.exp(-logvar))

  def loss_function(self, *args, **kwargs):
    recons, input, mu, log_var, z = args[:5]
    weight = 1
    recons_loss = F.mse_loss(recons, input, reduction="sum")
    log_q_zx = self.log_density_gaussian(z, mu, log_var).sum(dim=1)
    zeros = torch.zeros_like(z)
    log_p_z = self.log_density_gaussian(z, zeros, zeros).sum(dim=1)
    batch_size, latent_dim = z.shape
    mat_log_q_z = self.log_density_gaussian(
        z.view(batch_size, 1, latent_dim),
        mu.view(1, batch_size, latent_dim),
        log_var.view(1, batch_size, latent_dim))
    dataset_size = (1 / kwargs['M_N']) * batch_size
    strat_weight = (dataset_size - batch_size + 1) / (dataset_size * (batch_size - 1))
    importance_weights = torch.Tensor(batch_size, batch_size).fill_(
        1 / (batch_size - 1)).to(input.device)
    importance_weights.view(-1)[::batch_size] = 1 / dataset_size
    importance_weights.view(-1)[1::batch_size] = strat_weight
    importance_weights[batch_size - 2, 0] = strat_weight
    log_importance_weights = importance_weights.log()
    mat_log_q_z += log_importance_weights.view(batch_size, batch_size, 1)

    log_q_z = torch.logsumexp(mat_log_q_z.sum(2), dim=1, keepdim=False)
    log_prod_q_z = torch.logsumexp(mat_log_q_z, dim=1, keepdim=False).sum(1)

    mi_loss = (log_q_zx - log_q_z).mean()
    tc_loss = (log_q_z - log_prod_q_z).mean()
    kld_loss = (log_prod_q_z - log_p_z).mean()

    if self.training:
      self.num_iter += 1
      anneal_rate = min(0 + 1 * self.num_iter / self.anneal_steps, 1)
    else:
      anneal_rate = 1.

    loss = recons_loss / batch_size + self.alpha * mi_loss + weight * (
        self.beta * tc_loss + anneal_rate * self.gamma * kld_loss)
    return {'loss': loss, 'Reconstruction_Loss': recons_loss, 'KLD': kld_loss,
            'TC_Loss': tc_loss, 'MI_Loss': mi_loss}


def assert_seed_conv_matches(ref, params, model, x_nchw, z, atol=1e-6):
  """Our seed_conv ``model`` with ``params`` gives the torch ``ref``'s encoder
  and decoder outputs (rtol 1e-5) on images ``x_nchw`` and latents ``z``."""
  import functools

  import jax
  import numpy as np
  with torch.no_grad():
    mu_t, logvar_t = ref.encode(torch.from_numpy(x_nchw))
    recon_t = ref.decode(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
  mu, logvar = jax.jit(functools.partial(model.apply, method="encode"))(
      {"params": params}, x_nchw.transpose(0, 2, 3, 1))
  recon = jax.jit(functools.partial(model.apply, method="decode"))({"params": params}, z)
  np.testing.assert_allclose(mu, mu_t.numpy(), rtol=1e-5, atol=atol)
  np.testing.assert_allclose(logvar, logvar_t.numpy(), rtol=1e-5, atol=atol)
  np.testing.assert_allclose(recon, recon_t, rtol=1e-5, atol=atol)
