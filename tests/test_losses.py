"""Objectives: exact values from numpy, the anneal schedule, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from betatc_jax import estimators, losses


def _batch(seed=0, b=6, d=4, shape=(5, 5, 1)):
  rng = np.random.default_rng(seed)
  x = (rng.uniform(size=(b,) + shape) > 0.5).astype(np.float32)
  logits = rng.normal(size=(b,) + shape).astype(np.float32)
  mu = rng.normal(size=(b, d)).astype(np.float32)
  logvar = rng.uniform(-2, 0, (b, d)).astype(np.float32)
  z = (mu + np.exp(logvar / 2) * rng.normal(size=(b, d))).astype(np.float32)
  return x, logits, mu, logvar, z


def test_bernoulli_nll_matches_numpy():
  x, logits, *_ = _batch()
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  want = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(-1)
  np.testing.assert_allclose(losses.reconstruction_nll(x, logits, "bernoulli"), want, rtol=1e-5)


def test_bernoulli_nll_stable_for_large_logits():
  x = jnp.array([[1.0, 0.0]])
  nll = losses.reconstruction_nll(x, jnp.array([[200.0, -200.0]]), "bernoulli")
  np.testing.assert_allclose(nll, [0.0], atol=1e-6)
  nll = losses.reconstruction_nll(x, jnp.array([[-200.0, 200.0]]), "bernoulli")
  np.testing.assert_allclose(nll, [400.0], rtol=1e-6)


def test_gaussian_nll_is_summed_squared_error():
  x, out, *_ = _batch(1)
  want = ((out - x) ** 2).reshape(len(x), -1).sum(-1)
  np.testing.assert_allclose(losses.reconstruction_nll(x, out, "gaussian"), want, rtol=1e-5)


def test_unknown_likelihood_rejected():
  with pytest.raises(ValueError, match="Unknown likelihood"):
    losses.reconstruction_nll(jnp.zeros((2, 3)), jnp.zeros((2, 3)), "poisson")


@pytest.mark.parametrize("alpha,beta,gamma,anneal", [(1, 6, 1, 1.0), (0.5, 2, 3, 0.25)])
def test_betatc_objective_is_the_weighted_sum(alpha, beta, gamma, anneal):
  x, logits, mu, logvar, z = _batch()
  loss, m = losses.betatc_objective(
      x, logits, mu, logvar, z, dataset_size=100, anneal=anneal,
      alpha=alpha, beta=beta, gamma=gamma, estimator="mss", likelihood="bernoulli")
  terms = estimators.kl_decomposition(z, mu, logvar, 100, "mss")
  recon = float(np.mean(losses.reconstruction_nll(x, logits, "bernoulli")))
  want = recon + alpha * terms["mi"] + beta * terms["tc"] + gamma * anneal * terms["dim_kl"]
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(m["recon"], recon, rtol=1e-6)
  kl = 0.5 * np.mean(np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, -1))
  np.testing.assert_allclose(m["kl"], kl, rtol=1e-5)
  np.testing.assert_allclose(m["elbo"], -recon - kl, rtol=1e-5)
  for k in ("mi", "tc", "dim_kl"):
    np.testing.assert_allclose(m[k], terms[k], rtol=1e-6)


@pytest.mark.parametrize("name,estimator,anneal_steps,step", [
    ("betatc", "mss", 0, 0), ("betatc", "reference", 10, 3), ("betatc", "mws", 4, 9),
    ("beta_vae", "mss", 0, 5)])
def test_weighted_objective_equals_the_named_objective(name, estimator, anneal_steps, step):
  """With ``objective_weights``, one compiled function (weights as arrays)
  gives each objective's loss, metrics and gradients exactly."""
  x, logits, mu, logvar, z = _batch(2)
  weights = losses.objective_weights(name, alpha=0.5, beta=4.0, gamma=2.0,
                                     anneal_steps=anneal_steps, estimator=estimator)

  def weighted(mu, w):
    return losses.weighted_objective(x, logits, mu, logvar, z, step, w, dataset_size=100)

  def named(mu):
    if name == "betatc":
      return losses.betatc_objective(
          x, logits, mu, logvar, z, dataset_size=100, alpha=0.5, beta=4.0, gamma=2.0,
          anneal=losses.linear_anneal(step, anneal_steps), estimator=estimator)
    return losses.beta_vae_objective(x, logits, mu, logvar, beta=4.0, z=z, dataset_size=100,
                                     estimator=estimator)

  (loss, m), grad = jax.jit(jax.value_and_grad(weighted, has_aux=True))(mu, weights)
  (want, want_m), want_grad = jax.value_and_grad(named, has_aux=True)(mu)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)
  for key in want_m:
    np.testing.assert_allclose(m[key], want_m[key], rtol=1e-6, atol=1e-7, err_msg=key)
  np.testing.assert_allclose(m["anneal"], min((step + 1) / anneal_steps, 1.0)
                             if anneal_steps else 1.0, rtol=1e-6)


def test_objective_weights_reject_unknown_names():
  with pytest.raises(ValueError, match="Unknown objective"):
    losses.objective_weights("nope")
  with pytest.raises(ValueError, match=">= 0"):
    losses.objective_weights("factorvae", factorvae_gamma=-1.0)
  with pytest.raises(ValueError, match=">= 0"):
    losses.objective_weights("dip_vae_i", dip_lambda_od=-0.1)
  with pytest.raises(ValueError, match=">= 0"):
    losses.objective_weights("annealed_vae", capacity_max=-5.0)
  with pytest.raises(ValueError, match="Unknown estimator"):
    losses.objective_weights("betatc", estimator="iwae")


def test_beta_vae_objective():
  x, logits, mu, logvar, z = _batch(2)
  loss, m = losses.beta_vae_objective(x, logits, mu, logvar, beta=4.0, z=z, dataset_size=50)
  kl = 0.5 * np.mean(np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, -1))
  recon = float(np.mean(losses.reconstruction_nll(x, logits, "bernoulli")))
  np.testing.assert_allclose(loss, recon + 4.0 * kl, rtol=1e-5)
  terms = estimators.kl_decomposition(z, mu, logvar, 50, "mss")
  np.testing.assert_allclose(m["tc"], terms["tc"], rtol=1e-6)
  # The monitoring terms carry no gradient into the loss.
  g = jax.grad(lambda z: losses.beta_vae_objective(
      x, logits, mu, logvar, beta=4.0, z=z, dataset_size=50)[0])(z)
  np.testing.assert_array_equal(g, 0.0)


def test_beta_vae_objective_requires_dataset_size_with_z():
  x, logits, mu, logvar, z = _batch(3)
  with pytest.raises(ValueError, match="dataset_size is required"):
    losses.beta_vae_objective(x, logits, mu, logvar, z=z)


def test_linear_anneal_is_a_pure_function_of_the_step():
  values = [float(losses.linear_anneal(s, 4)) for s in range(6)]
  assert values == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
  assert float(losses.linear_anneal(0, 0)) == 1.0
  # Jitted, traced steps give the same numbers.
  jitted = jax.jit(losses.linear_anneal, static_argnums=1)
  assert [float(jitted(s, 4)) for s in range(6)] == values


# ------------------------------------------------------------------ baselines

def _numpy_recon_kl(x, logits, mu, logvar):
  x, logits, mu, logvar = (np.asarray(a, np.float64) for a in (x, logits, mu, logvar))
  p = 1 / (1 + np.exp(-logits))
  recon = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(-1).mean()
  kl = (0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar)).sum(-1).mean()
  return recon, kl


@pytest.mark.parametrize("name,variance,lambda_d", [("dip_vae_i", 0.0, 30.0),
                                                    ("dip_vae_ii", 1.0, 3.0)])
def test_dip_vae_matches_numpy(name, variance, lambda_d):
  """recon + KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ (C_ii − 1)², C from numpy; λ_d
  defaults to 10·λ_od (I) and λ_od (II)."""
  x, logits, mu, logvar, z = _batch(3)
  m64, v64 = mu.astype(np.float64), np.exp(logvar.astype(np.float64))
  cov = np.cov(m64, rowvar=False, bias=True) + variance * np.diag(v64.mean(0))
  off = (cov ** 2).sum() - (np.diag(cov) ** 2).sum()
  penalty = 3.0 * off + lambda_d * ((np.diag(cov) - 1) ** 2).sum()
  recon, kl = _numpy_recon_kl(x, logits, mu, logvar)
  weights = losses.objective_weights(name, dip_lambda_od=3.0)
  loss, m = losses.weighted_objective(x, logits, mu, logvar, z, 0, weights, dataset_size=100)
  np.testing.assert_allclose(m["dip_penalty"], penalty, rtol=1e-5)
  np.testing.assert_allclose(loss, recon + kl + penalty, rtol=1e-5)
  np.testing.assert_allclose(losses.dip_covariance(mu, logvar, variance), cov, rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("step,capacity", [(0, 0.0), (50, 12.5), (100, 25.0), (400, 25.0)])
def test_annealed_vae_matches_numpy(step, capacity):
  """γ·|KL − C(step)| with C = C_max·min(step/T, 1), and no plain KL term."""
  x, logits, mu, logvar, z = _batch(4)
  recon, kl = _numpy_recon_kl(x, logits, mu, logvar)
  weights = losses.objective_weights("annealed_vae", capacity_gamma=7.0, capacity_max=25.0,
                                     capacity_steps=100)
  loss, m = losses.weighted_objective(x, logits, mu, logvar, z, step, weights, dataset_size=100)
  np.testing.assert_allclose(m["capacity"], capacity, rtol=1e-6)
  np.testing.assert_allclose(loss, recon + 7.0 * abs(kl - capacity), rtol=1e-5)


def test_factorvae_vae_loss_adds_gamma_times_the_discriminator_estimate():
  x, logits, mu, logvar, z = _batch(5)
  recon, kl = _numpy_recon_kl(x, logits, mu, logvar)
  weights = losses.objective_weights("factorvae", factorvae_gamma=20.0)

  def loss(discriminator_tc):
    return losses.weighted_objective(x, logits, mu, logvar, z, 3, weights, dataset_size=100,
                                     discriminator_tc=discriminator_tc)[0]

  np.testing.assert_allclose(loss(0.7), recon + kl + 20.0 * 0.7, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(loss)(0.7), 20.0, rtol=1e-6)
  # The other objectives ignore a discriminator estimate.
  betatc = losses.objective_weights("betatc")
  a = losses.weighted_objective(x, logits, mu, logvar, z, 3, betatc, dataset_size=100)[0]
  b = losses.weighted_objective(x, logits, mu, logvar, z, 3, betatc, dataset_size=100,
                                discriminator_tc=5.0)[0]
  assert float(a) == float(b)
