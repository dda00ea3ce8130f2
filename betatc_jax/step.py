"""Every jitted function of training: one run's step (with or without
keeping its last finite state), FactorVAE's discriminator step, the step
jitted over a data-parallel mesh, and a population's vmapped steps.

``train_step(state, batch, key) -> (state, metrics)`` is pure: the run's
hyperparameters that may differ between the members of a population (the
objective's weights, the estimator, the learning rate) are arrays in the
state, not static closures, so ``jax.vmap(train_step)`` trains a
population.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from betatc_jax import discriminator, mesh
from betatc_jax.state import TrainState


def random_flip(x: jax.Array, key: jax.Array) -> jax.Array:
  """Each image mirrored left-right with probability ½ (the seed's
  RandomHorizontalFlip), from ``key``: x [B, H, W, C] -> [B, H, W, C]."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def learning_rate_at(state: TrainState) -> jax.Array:
  """The step size of the update ``state.step``."""
  return state.learning_rate * state.lr_decay ** (state.step // state.steps_per_epoch)


def step_inputs(state: TrainState, batch: jax.Array, key: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
  """The images and key of the update ``state.step``: (x, step_key).

  Args:
    state: the train state.
    batch: uint8 [B, H, W, C] images in [0, 255].
    key: the run's base key.

  Returns:
    x: float32 [B, H, W, C] in [0, 1] (flipped when ``state.random_flip``,
    from ``fold_in(step_key, 1)``); step_key = ``fold_in(key, state.step)``,
    which draws the posterior noise.
  """
  x = batch.astype(jnp.float32) / 255.0
  step_key = jax.random.fold_in(key, state.step)
  if state.random_flip:
    x = random_flip(x, jax.random.fold_in(step_key, 1))
  return x, step_key


def loss_and_grads(state: TrainState, x: jax.Array, step_key: jax.Array
                   ) -> tuple[dict[str, jax.Array], jax.Array, Any]:
  """The objective at ``state.params`` and its gradients.

  Args:
    state: the train state.
    x: float32 [B, H, W, C] images in [0, 1].
    step_key: the key of the posterior noise (ε = normal(step_key, [B, D])).

  Returns:
    (metrics, z, grads): the objective's metrics (``loss`` among them), the
    samples z [B, D] and d loss / d params.
  """
  def loss_fn(params):
    decoder_out, mu, logvar, z = state.apply_fn({"params": params}, x, step_key)
    tc_estimate = 0.0
    if state.discriminator_params is not None:
      logits = state.discriminator_apply({"params": state.discriminator_params}, z)
      tc_estimate = discriminator.density_ratio_tc(logits)
    loss, metrics = state.objective(x, decoder_out, mu, logvar, z, state.step, state.weights,
                                    discriminator_tc=tc_estimate)
    return loss, (metrics, z)

  (_, (metrics, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return metrics, z, grads


def train_step(state: TrainState, batch: jax.Array, key: jax.Array
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update on the global batch: ``loss_and_grads`` on ``step_inputs``,
  then Adam.

  Args:
    state: the train state (params, Adam state, step, hyperparameters).
    batch: uint8 [B, H, W, C] images in [0, 255]; converted to float here,
      on the device.
    key: the run's base key; the step's key is ``fold_in(key, state.step)``,
      so a resumed run draws the same noise.

  Returns:
    (new state, metrics): the objective's metrics plus ``grad_norm`` and
    ``finite`` (1.0 when the loss and all gradients are finite).
  """
  x, step_key = step_inputs(state, batch, key)
  metrics, z, grads = loss_and_grads(state, x, step_key)
  new_state = apply_gradients(state, grads)
  finite = jnp.isfinite(metrics["loss"])
  if state.discriminator_params is not None:
    new_state, d_loss = discriminator_step(new_state, jax.lax.stop_gradient(z),
                                           jax.random.fold_in(step_key, 2))
    metrics = dict(metrics, discriminator_loss=d_loss)
    finite &= jnp.isfinite(d_loss)
  # The barrier puts the norm's reductions after the update. Left free,
  # XLA:CPU runs them between the backward pass's GEMMs, which made the MLP
  # step at B=64 11-15% slower on 2 cores (benchmarks/RESULTS.md).
  grads, new_state = jax.lax.optimization_barrier((grads, new_state))
  grad_norm = optax.tree.norm(grads)
  finite &= jnp.isfinite(grad_norm)
  metrics = dict(metrics, grad_norm=grad_norm, learning_rate=learning_rate_at(state),
                 finite=finite.astype(jnp.float32))
  return new_state, metrics


def train_step_keeping_finite(state: TrainState, live: jax.Array, batch: jax.Array,
                              key: jax.Array
                              ) -> tuple[TrainState, jax.Array, dict[str, jax.Array]]:
  """``train_step`` that keeps a diverged run's last finite state.

  The update is taken only while ``live`` and the step is finite (loss,
  gradients and, for FactorVAE, the discriminator's loss); otherwise the
  state stays as it was, step count included, and ``live`` turns False for
  good. The decision is made before the update, which runs under
  ``lax.cond``: a live run pays no extra pass over its parameters and
  moments (a select after the update cost a quarter of the MLP's step at
  B = 64 on a CPU), and its numbers are ``train_step``'s, bit for bit. An
  update that itself overflows the parameters to inf is caught at the next
  step, by its loss. Vmapped over members, the cond becomes a select.

  Args:
    state, batch, key: as in ``train_step``.
    live: bool scalar, whether the run still trains.

  Returns:
    (new state, new live, metrics): ``train_step``'s metrics plus ``live``
    (float) after this step.
  """
  x, step_key = step_inputs(state, batch, key)
  metrics, z, grads = loss_and_grads(state, x, step_key)
  grads = jax.lax.optimization_barrier(grads)       # the norm after the backward GEMMs
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
  with_discriminator = None
  if state.discriminator_params is not None:        # it reads z and its own state only
    with_discriminator, d_loss = discriminator_step(state, jax.lax.stop_gradient(z),
                                                    jax.random.fold_in(step_key, 2))
    metrics = dict(metrics, discriminator_loss=d_loss)
    finite &= jnp.isfinite(d_loss)
  keep = live & finite

  def updated(state):
    new_state = apply_gradients(state, grads)
    if with_discriminator is not None:
      new_state = new_state.replace(
          discriminator_params=with_discriminator.discriminator_params,
          discriminator_opt_state=with_discriminator.discriminator_opt_state)
    return new_state

  new_state = jax.lax.cond(keep, updated, lambda state: state, state)
  metrics = dict(metrics, grad_norm=grad_norm, learning_rate=learning_rate_at(state),
                 finite=finite.astype(jnp.float32), live=keep.astype(jnp.float32))
  return new_state, keep, metrics


def apply_gradients(state: TrainState, grads: Any) -> TrainState:
  """Adam's update of the parameters at ``learning_rate_at(state)``, step + 1."""
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  learning_rate = learning_rate_at(state)
  updates = jax.tree.map(lambda u: learning_rate * u, updates)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)


def discriminator_step(state: TrainState, z: jax.Array, key: jax.Array
                       ) -> tuple[TrainState, jax.Array]:
  """One Adam update of FactorVAE's discriminator: z [B, D] (the VAE's
  samples of this step, gradients stopped) labelled real, ``permute_dims(z,
  key)`` labelled permuted. Returns (state with the new discriminator, its loss)."""
  permuted = discriminator.permute_dims(z, key)

  def loss_fn(params):
    apply = lambda v: state.discriminator_apply({"params": params}, v)
    return discriminator.discriminator_loss(apply(z), apply(permuted))

  params = state.discriminator_params
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = state.discriminator_tx.update(grads, state.discriminator_opt_state, params)
  return state.replace(discriminator_params=optax.apply_updates(params, updates),
                       discriminator_opt_state=opt_state), loss


def jit_train_step(mesh_: jax.sharding.Mesh, state_sharding: Any) -> Callable:
  """``train_step`` jitted over ``mesh_`` with explicit shardings: state
  replicated, batch sharded over 'data', metrics replicated. The state is
  donated."""
  replicated = mesh.replicated(mesh_)
  return jax.jit(train_step, donate_argnums=0,
                 in_shardings=(state_sharding, mesh.data_sharding(mesh_), replicated),
                 out_shardings=(state_sharding, replicated))


def population_step(states: TrainState, batches: jax.Array, keys: jax.Array
                    ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One update of every member: ``vmap(train_step)``.

  Args:
    states: stacked train states, leading axis [K].
    batches: uint8 [K, B, H, W, C], member k's batch in row k.
    keys: [K] the members' base keys.

  Returns:
    (new states, metrics), each metric [K].
  """
  return jax.vmap(train_step)(states, batches, keys)


def population_step_keeping_finite(states: TrainState, live: jax.Array,
                                   batches: jax.Array, keys: jax.Array
                                   ) -> tuple[TrainState, jax.Array,
                                              dict[str, jax.Array]]:
  """``population_step`` where a diverged member keeps its last finite state
  (``train_step_keeping_finite``, member by member): ``live``
  bool [K] in and out."""
  return jax.vmap(train_step_keeping_finite)(states, live, batches, keys)


def _rows(indices: jax.Array, offset: jax.Array) -> jax.Array:
  """Step ``offset``'s rows [K, B] of the interval's indices [S, K, B]."""
  return jax.lax.dynamic_index_in_dim(indices, offset, keepdims=False)


def population_step_from_indices(states: TrainState, images: jax.Array,
                                 indices: jax.Array, offset: jax.Array, keys: jax.Array
                                 ) -> tuple[TrainState, dict[str, jax.Array]]:
  """``population_step`` on batches gathered on the device.

  Args:
    states, keys: as in ``population_step``.
    images: uint8 [N, H, W, C], the dataset, resident on the device.
    indices: int32 [S, K, B], the rows of S consecutive steps' batches.
    offset: int32 scalar, which of the S steps this is.
  """
  return population_step(states, images[_rows(indices, offset)], keys)


def population_step_keeping_finite_from_indices(
    states: TrainState, live: jax.Array, images: jax.Array, indices: jax.Array,
    offset: jax.Array, keys: jax.Array
) -> tuple[TrainState, jax.Array, dict[str, jax.Array]]:
  """``population_step_keeping_finite`` on batches gathered on the device
  (the arguments of ``population_step_from_indices``)."""
  return population_step_keeping_finite(states, live, images[_rows(indices, offset)], keys)


