"""The train state: one run's, built from its config, and K runs' stacked
on a leading axis; what a checkpoint holds of it.

``create_train_state`` is the one builder. ``create_population_state`` builds
each member with it and stacks them (``stack``), so a member starts exactly
as its single run does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from betatc_jax import checkpointing, discriminator, losses, models


class TrainState(train_state.TrainState):
  """flax TrainState plus the run's array hyperparameters and the objective.

  Attributes:
    weights: ``losses.ObjectiveWeights`` (which objective, β, estimator, ...).
    learning_rate: float32 scalar; ``tx`` is Adam without its learning rate.
    lr_decay, steps_per_epoch: the step size at step t is
      ``learning_rate · lr_decay ** (t // steps_per_epoch)`` (decay 1: constant).
    objective: static ``losses.weighted_objective`` with the dataset size and
      likelihood bound: ``objective(x, decoder_out, mu, logvar, z, step,
      weights) -> (loss, metrics)``.
    random_flip: static; flip each training image with probability ½, drawn
      from ``fold_in(step key, 1)`` (a pure function of (seed, step)).
    discriminator_params, discriminator_opt_state: FactorVAE's discriminator and its Adam
      state (None for the other objectives); discriminator_apply, discriminator_tx: static,
      its network's apply and its optimizer.
  """
  weights: losses.ObjectiveWeights
  learning_rate: jax.Array
  lr_decay: jax.Array
  steps_per_epoch: jax.Array
  objective: Callable[..., tuple[jax.Array, dict[str, jax.Array]]] = flax.struct.field(
      pytree_node=False)
  random_flip: bool = flax.struct.field(pytree_node=False, default=False)
  discriminator_params: Any = None
  discriminator_opt_state: Any = None
  discriminator_apply: Callable[..., jax.Array] | None = flax.struct.field(pytree_node=False,
                                                                          default=None)
  discriminator_tx: optax.GradientTransformation | None = flax.struct.field(pytree_node=False,
                                                                     default=None)


def make_model(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> models.VAE:
  return models.VAE(arch=config.model.arch, latent_dim=config.model.latent_dim,
                    image_shape=tuple(image_shape),
                    output_activation=config.model.output_activation,
                    conv_impl=config.model.conv_impl, param_init=config.model.param_init,
                    posterior_scale=config.model.posterior_scale)


def make_objective(config: ml_collections.ConfigDict, dataset_size: int) -> Callable:
  """``losses.weighted_objective`` with what every run on this data shares bound."""
  return functools.partial(losses.weighted_objective, dataset_size=int(dataset_size),
                           likelihood=config.objective.likelihood)


def objective_weights(config: ml_collections.ConfigDict) -> losses.ObjectiveWeights:
  """The config's objective (name and its hyperparameters) as arrays."""
  obj = config.objective
  return losses.objective_weights(
      obj.name, alpha=obj.alpha, beta=obj.beta, gamma=obj.gamma,
      anneal_steps=obj.anneal_steps, estimator=obj.estimator,
      marginal_estimator=obj.marginal_estimator or None, factorvae_gamma=obj.factorvae_gamma, dip_lambda_od=obj.dip_lambda_od,
      dip_lambda_d=obj.dip_lambda_d_factor * obj.dip_lambda_od,
      capacity_gamma=obj.capacity_gamma, capacity_max=obj.capacity_max,
      capacity_steps=obj.capacity_steps)


def discriminator_fields(config: ml_collections.ConfigDict, seed: int | jax.Array) -> dict[str, Any]:
  """The discriminator fields of ``TrainState`` for an objective in
  ``losses.DISCRIMINATOR_OBJECTIVES`` (FactorVAE), else {}: its params (from
  ``fold_in(key(seed), 1)``), its Adam state, and the static apply and
  optimizer."""
  obj = config.objective
  if obj.name not in losses.DISCRIMINATOR_OBJECTIVES:
    return {}
  net = discriminator.Discriminator(obj.discriminator_layers, obj.discriminator_width)
  params = net.init(jax.random.fold_in(jax.random.key(seed), 1),
                    jnp.zeros((1, config.model.latent_dim)))["params"]
  tx = discriminator.optimizer(obj.discriminator_learning_rate, obj.discriminator_b1,
                        obj.discriminator_b2)
  return {"discriminator_params": params, "discriminator_opt_state": tx.init(params),
          "discriminator_apply": net.apply, "discriminator_tx": tx}


def adam_without_learning_rate() -> optax.GradientTransformation:
  """``optax.adam`` with the step size left out (it is ``state.learning_rate``).

  The same state structure as ``optax.adam(lr)``, so checkpoints are the
  same, and lr·(−u) equals adam's (−lr)·u exactly.
  """
  return optax.chain(optax.scale_by_adam(), optax.scale(-1.0))


def init_params(model: models.VAE, image_shape: tuple[int, int, int], seed: int | jax.Array
                ) -> tuple[Any, jax.Array]:
  """A run's initial parameters and base step key, both from ``seed``:
  ``init_key, step_key = split(key(seed))``; params from ``init_key``."""
  init_key, step_key = jax.random.split(jax.random.key(seed))
  return _params_from_key(model, init_key, image_shape), step_key


def _params_from_key(model: models.VAE, key: jax.Array, image_shape: tuple[int, int, int]) -> Any:
  params = model.init(key, jnp.zeros((1,) + tuple(image_shape)), jax.random.key(0))["params"]
  return models.torch_default_init(params, key) if model.param_init == "torch" else params


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array,
                       image_shape: tuple[int, int, int], dataset_size: int,
                       params: Any = None, seed: int | jax.Array | None = None) -> TrainState:
  """Initialises parameters (from ``key``, unless ``params`` are given), Adam,
  and FactorVAE's discriminator (``discriminator_fields``, from ``seed``, default
  ``config.seed``)."""
  model = make_model(config, image_shape)
  if params is None:
    params = _params_from_key(model, key, image_shape)
  return TrainState.create(apply_fn=model.apply, params=params, tx=adam_without_learning_rate(),
                           **hyperparameters(config, dataset_size),
                           objective=make_objective(config, dataset_size),
                           random_flip=bool(config.dataset.random_flip),
                           **discriminator_fields(config, config.seed if seed is None else seed))


def hyperparameters(config: ml_collections.ConfigDict, dataset_size: int) -> dict[str, Any]:
  """The state's arrays that come from the config, not from training (and
  are not in a checkpoint): the objective's weights and the step size's
  schedule."""
  return {"weights": objective_weights(config),
          "learning_rate": jnp.asarray(config.learning_rate, jnp.float32),
          **learning_rate_schedule(config, dataset_size)}


def learning_rate_schedule(config: ml_collections.ConfigDict, dataset_size: int
                           ) -> dict[str, jax.Array]:
  """``lr_decay`` and ``steps_per_epoch`` of the state. ``"constant"``: decay
  1. ``"exponential_per_epoch"``: ×``config.lr_decay`` after every epoch of
  ceil(N / B) steps, as PyTorch's ExponentialLR stepped once per epoch."""
  decay = config.lr_decay if config.lr_schedule == "exponential_per_epoch" else 1.0
  return {"lr_decay": jnp.asarray(decay, jnp.float32),
          "steps_per_epoch": jnp.asarray(-(-int(dataset_size) // config.batch_size), jnp.int32)}


def stack(trees: Sequence[Any]) -> Any:
  """K pytrees of the same structure -> one with a leading [K] axis (the
  static fields, such as a state's objective, from the first)."""
  treedef = jax.tree.structure(trees[0])
  leaves = zip(*(jax.tree.leaves(tree) for tree in trees))
  return jax.tree.unflatten(treedef, [jnp.stack(xs) for xs in leaves])


def unstack(tree: Any, index: Any) -> Any:
  """Member ``index`` (an int, or an index array for several) of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)


def create_population_state(configs: Sequence[ml_collections.ConfigDict],
                            image_shape: tuple[int, int, int], dataset_size: int
                            ) -> tuple[TrainState, jax.Array]:
  """The members' train states and step keys, stacked [K]: each built by
  ``create_train_state`` from its config, with the parameters and key of
  ``init_params(seed)``, exactly as its single run's."""
  model = make_model(configs[0], image_shape)
  init = jax.jit(lambda seed: init_params(model, image_shape, seed))
  states, keys = [], []
  for config in configs:
    params, key = init(config.seed)
    states.append(create_train_state(config, None, image_shape, dataset_size, params,
                                     seed=config.seed))
    keys.append(key)
  return stack(states), jnp.stack(keys)


def checkpoint_tree(state: TrainState, rng: Any) -> dict[str, Any]:
  """What a checkpoint holds: params, Adam state, step and the base key's
  data (of one run, or stacked for a population), and FactorVAE's
  discriminator. ``rng``: the key, or already its data (or their shapes)."""
  typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
  tree = {"params": state.params, "opt_state": state.opt_state, "step": state.step,
          "rng": jax.random.key_data(rng) if typed else rng}
  if state.discriminator_params is not None:
    tree["discriminator"] = {"params": state.discriminator_params,
                             "opt_state": state.discriminator_opt_state}
  return tree


# Entries named otherwise by earlier versions: new name -> old name.
LEGACY_NAMES = {"discriminator": "critic"}


def restore_state(manager: Any, state: TrainState, rng: jax.Array
                  ) -> tuple[int | None, TrainState, jax.Array, dict[str, Any]]:
  """(step, state, rng, records) from the latest checkpoint, restored into
  the shapes and shardings of ``state`` and ``rng`` (arrays, or
  ``jax.ShapeDtypeStruct`` with shardings; ``rng`` a key or its data);
  (None, state, rng, {}) unchanged when there is none. ``records`` is what
  the loop saved beside the state (``checkpointing.save``).

  Raises:
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
  """
  step, restored, records = checkpointing.restore_latest(manager, checkpoint_tree(state, rng),
                                                         legacy_names=LEGACY_NAMES)
  if restored is None:
    return None, state, rng, {}
  state = state.replace(params=restored["params"], opt_state=restored["opt_state"],
                        step=restored["step"])
  if "discriminator" in restored:
    state = state.replace(discriminator_params=restored["discriminator"]["params"],
                          discriminator_opt_state=restored["discriminator"]["opt_state"])
  return step, state, jax.random.wrap_key_data(restored["rng"]), records
