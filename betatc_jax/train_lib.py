"""Training: config validation, state, the jitted data-parallel step, the loop.

``train_step`` is a module-level pure function; ``train`` only wires data,
state, checkpoints and logging together. The run's hyperparameters that may
differ between the members of a population (the objective's weights, the
estimator, the learning rate) are arrays in the state, not static closures,
so ``jax.vmap(train_step)`` trains a population (``betatc_jax.population``).

Evaluation sits above this module: ``betatc_jax.experiment.train_and_evaluate``
trains, then calls ``betatc_jax.evaluate``.
"""

from __future__ import annotations

import functools
import json
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from betatc_jax import checkpointing, critic, estimators, layers, losses, models, sharding
from betatc_jax.data import load_dataset, pipeline
from betatc_jax.data.ground_truth import GroundTruthDataset

OBJECTIVES = losses.OBJECTIVES
LR_SCHEDULES = ("constant", "exponential_per_epoch")


# ------------------------------------------------------------------ config

def _schema() -> ml_collections.ConfigDict:
  from betatc_jax import default_config  # the default config defines every key
  return default_config.get_config()


def _unknown_keys(config: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = "") -> list[str]:
  unknown = []
  for key, value in config.items():
    if key not in schema:
      unknown.append(prefix + key)
    elif isinstance(value, (Mapping, ml_collections.ConfigDict)) and \
        isinstance(schema[key], (Mapping, ml_collections.ConfigDict)):
      unknown += _unknown_keys(value, schema[key], f"{prefix}{key}.")
  return unknown


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` on top of the default config: keys added since a run was
  saved take their default values."""
  def merge(base, update):
    for key, value in update.items():
      if isinstance(value, (Mapping, ml_collections.ConfigDict)):
        merge(base[key], value)
      else:
        base[key] = value
  merged = _schema()
  merge(merged, config)
  return merged


def set_config_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets the dotted ``key`` (e.g. ``"objective.beta"``) of ``config`` in place.

  Raises:
    ValueError: no such key, or a value of the wrong type.
  """
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise ValueError(f"{key}: no such config key")
  try:
    node[leaf] = value
  except TypeError as e:
    raise ValueError(f"{key}={value!r}: {e}") from None


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError, before any work, for unknown keys or invalid values."""
  unknown = _unknown_keys(config, _schema())
  if unknown:
    raise ValueError(f"Unknown config key(s): {', '.join(sorted(unknown))}.")
  obj, model = config.objective, config.model
  checks = [
      (obj.name in OBJECTIVES, f"objective.name must be one of {OBJECTIVES}, got {obj.name!r}"),
      (obj.estimator in estimators.ESTIMATORS,
       f"objective.estimator must be one of {estimators.ESTIMATORS}, got {obj.estimator!r}"),
      (obj.marginal_estimator in ("",) + estimators.ESTIMATORS,
       f"objective.marginal_estimator must be '' (the estimator's own) or one of "
       f"{estimators.ESTIMATORS}, got {obj.marginal_estimator!r}"),
      (obj.likelihood in losses.LIKELIHOODS,
       f"objective.likelihood must be one of {losses.LIKELIHOODS}, got {obj.likelihood!r}"),
      (obj.beta >= 0, f"objective.beta must be >= 0, got {obj.beta}"),
      (obj.alpha >= 0, f"objective.alpha must be >= 0, got {obj.alpha}"),
      (obj.gamma >= 0, f"objective.gamma must be >= 0, got {obj.gamma}"),
      (obj.anneal_steps >= 0, f"objective.anneal_steps must be >= 0, got {obj.anneal_steps}"),
      *[(obj[k] >= 0, f"objective.{k} must be >= 0, got {obj[k]}") for k in (
          "factorvae_gamma", "dip_lambda_od", "dip_lambda_d_factor", "capacity_gamma",
          "capacity_max", "capacity_steps")],
      (obj.discriminator_layers >= 1,
       f"objective.discriminator_layers must be >= 1 (FactorVAE's discriminator needs a hidden "
       f"layer), got {obj.discriminator_layers}"),
      (obj.discriminator_width >= 1,
       f"objective.discriminator_width must be >= 1, got {obj.discriminator_width}"),
      (obj.discriminator_learning_rate > 0,
       f"objective.discriminator_learning_rate must be > 0, got {obj.discriminator_learning_rate}"),
      (0 <= obj.discriminator_b1 < 1 and 0 <= obj.discriminator_b2 < 1,
       "objective.discriminator_b1 and _b2 must be in [0, 1)"),
      (model.arch in models.ARCHS, f"model.arch must be one of {models.ARCHS}, got {model.arch!r}"),
      (model.latent_dim >= 1, f"model.latent_dim must be >= 1, got {model.latent_dim}"),
      (model.output_activation in models.OUTPUT_ACTIVATIONS,
       f"model.output_activation must be one of {models.OUTPUT_ACTIVATIONS}"),
      (model.conv_impl in layers.CONV_IMPLS,
       f"model.conv_impl must be one of {layers.CONV_IMPLS}, got {model.conv_impl!r}"),
      (model.param_init in models.PARAM_INITS,
       f"model.param_init must be one of {models.PARAM_INITS}, got {model.param_init!r}"),
      (model.posterior_scale in models.POSTERIOR_SCALES,
       f"model.posterior_scale must be one of {models.POSTERIOR_SCALES}, "
       f"got {model.posterior_scale!r}"),
      (config.batch_size >= 2,
       f"batch_size must be >= 2 (with one sample every estimator's log q(z) is that sample's "
       f"own posterior, so TC and MI are constants and β has no effect), got "
       f"{config.batch_size}"),
      (config.learning_rate > 0, f"learning_rate must be > 0, got {config.learning_rate}"),
      (config.lr_schedule in LR_SCHEDULES,
       f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}"),
      (0 < config.lr_decay <= 1, f"lr_decay must be in (0, 1], got {config.lr_decay}"),
      (config.num_train_steps >= 1, f"num_train_steps must be >= 1, got {config.num_train_steps}"),
      (config.log_every_steps >= 1, f"log_every_steps must be >= 1, got {config.log_every_steps}"),
      (config.checkpoint_every_steps >= 1,
       f"checkpoint_every_steps must be >= 1, got {config.checkpoint_every_steps}"),
      (config.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {config.keep_checkpoints}"),
      (not (obj.likelihood in losses.LOGIT_LIKELIHOODS and model.output_activation == "tanh"),
       "a Bernoulli likelihood needs logits: use model.output_activation='none'"),
      (config.selection.members == 0 or config.selection.members >= 2,
       f"selection.members must be 0 (off) or >= 2, got {config.selection.members}"),
      (not config.selection.members or 1 <= config.selection.steps < config.num_train_steps,
       f"selection.steps must be in [1, num_train_steps), got {config.selection.steps}"),
  ]
  errors = [message for ok, message in checks if not ok]
  if errors:
    raise ValueError("Invalid config: " + "; ".join(errors) + ".")


def dataset_from_config(config: ml_collections.ConfigDict) -> GroundTruthDataset:
  """Loads the dataset the config names, with only the options that apply."""
  d = config.dataset
  if d.name == "dsprites":
    options = {"path": d.path} if d.path else {"subsample": tuple(d.subsample)}
  elif d.name == "images":
    if not d.path:
      raise ValueError("dataset.name='images' needs dataset.path, a folder of JPEG/PNG files.")
    options = {"path": d.path, "image_size": d.image_size, "center_crop": d.center_crop or None,
               "channels": d.channels, "max_images": d.max_images or None, "subsample": d.every,
               "skip_bad": d.skip_bad, "progress": config.progress_bar}
  else:
    options = {"split": d.split, **({"data_dir": d.data_dir} if d.data_dir else {})}
  return load_dataset(d.name, **options)


# ------------------------------------------------------------------ state and step

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
    critic_params, critic_opt_state: FactorVAE's discriminator and its Adam
      state (None for the other objectives); critic_apply, critic_tx: static,
      its network's apply and its optimizer.
  """
  weights: losses.ObjectiveWeights
  learning_rate: jax.Array
  lr_decay: jax.Array
  steps_per_epoch: jax.Array
  objective: Callable[..., tuple[jax.Array, dict[str, jax.Array]]] = flax.struct.field(
      pytree_node=False)
  random_flip: bool = flax.struct.field(pytree_node=False, default=False)
  critic_params: Any = None
  critic_opt_state: Any = None
  critic_apply: Callable[..., jax.Array] | None = flax.struct.field(pytree_node=False, default=None)
  critic_tx: optax.GradientTransformation | None = flax.struct.field(pytree_node=False,
                                                                     default=None)


def random_flip(x: jax.Array, key: jax.Array) -> jax.Array:
  """Each image mirrored left-right with probability ½ (the seed's
  RandomHorizontalFlip), from ``key``: x [B, H, W, C] -> [B, H, W, C]."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


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


def critic_fields(config: ml_collections.ConfigDict, seed: int | jax.Array) -> dict[str, Any]:
  """The discriminator fields of ``TrainState`` for an objective in
  ``losses.CRITIC_OBJECTIVES`` (FactorVAE), else {}: its params (from
  ``fold_in(key(seed), 1)``), its Adam state, and the static apply and
  optimizer."""
  obj = config.objective
  if obj.name not in losses.CRITIC_OBJECTIVES:
    return {}
  net = critic.Discriminator(obj.discriminator_layers, obj.discriminator_width)
  params = net.init(jax.random.fold_in(jax.random.key(seed), 1),
                    jnp.zeros((1, config.model.latent_dim)))["params"]
  tx = critic.optimizer(obj.discriminator_learning_rate, obj.discriminator_b1,
                        obj.discriminator_b2)
  return {"critic_params": params, "critic_opt_state": tx.init(params),
          "critic_apply": net.apply, "critic_tx": tx}


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
  and FactorVAE's discriminator (``critic_fields``, from ``seed``, default
  ``config.seed``)."""
  model = make_model(config, image_shape)
  if params is None:
    params = _params_from_key(model, key, image_shape)
  return TrainState.create(apply_fn=model.apply, params=params, tx=adam_without_learning_rate(),
                           weights=objective_weights(config),
                           learning_rate=jnp.asarray(config.learning_rate, jnp.float32),
                           **learning_rate_schedule(config, dataset_size),
                           objective=make_objective(config, dataset_size),
                           random_flip=bool(config.dataset.random_flip),
                           **critic_fields(config, config.seed if seed is None else seed))


def learning_rate_schedule(config: ml_collections.ConfigDict, dataset_size: int
                           ) -> dict[str, jax.Array]:
  """``lr_decay`` and ``steps_per_epoch`` of the state. ``"constant"``: decay
  1. ``"exponential_per_epoch"``: ×``config.lr_decay`` after every epoch of
  ceil(N / B) steps, as PyTorch's ExponentialLR stepped once per epoch."""
  decay = config.lr_decay if config.lr_schedule == "exponential_per_epoch" else 1.0
  return {"lr_decay": jnp.asarray(decay, jnp.float32),
          "steps_per_epoch": jnp.asarray(-(-int(dataset_size) // config.batch_size), jnp.int32)}


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
    critic_tc = 0.0
    if state.critic_params is not None:
      critic_tc = critic.density_ratio_tc(state.critic_apply({"params": state.critic_params}, z))
    loss, metrics = state.objective(x, decoder_out, mu, logvar, z, state.step, state.weights,
                                    critic_tc=critic_tc)
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
  if state.critic_params is not None:
    new_state, critic_loss = critic_step(new_state, jax.lax.stop_gradient(z),
                                         jax.random.fold_in(step_key, 2))
    metrics = dict(metrics, discriminator_loss=critic_loss)
    finite &= jnp.isfinite(critic_loss)
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
  critic = None
  if state.critic_params is not None:                 # it reads z and its own state only
    critic, critic_loss = critic_step(state, jax.lax.stop_gradient(z),
                                      jax.random.fold_in(step_key, 2))
    metrics = dict(metrics, discriminator_loss=critic_loss)
    finite &= jnp.isfinite(critic_loss)
  keep = live & finite

  def updated(state):
    new_state = apply_gradients(state, grads)
    if critic is not None:
      new_state = new_state.replace(critic_params=critic.critic_params,
                                    critic_opt_state=critic.critic_opt_state)
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


def critic_step(state: TrainState, z: jax.Array, key: jax.Array) -> tuple[TrainState, jax.Array]:
  """One Adam update of FactorVAE's discriminator: z [B, D] (the VAE's
  samples of this step, gradients stopped) labelled real, ``permute_dims(z,
  key)`` labelled permuted. Returns (state with the new critic, its loss)."""
  permuted = critic.permute_dims(z, key)

  def loss_fn(params):
    apply = lambda v: state.critic_apply({"params": params}, v)
    return critic.discriminator_loss(apply(z), apply(permuted))

  loss, grads = jax.value_and_grad(loss_fn)(state.critic_params)
  updates, opt_state = state.critic_tx.update(grads, state.critic_opt_state, state.critic_params)
  return state.replace(critic_params=optax.apply_updates(state.critic_params, updates),
                       critic_opt_state=opt_state), loss


def jit_train_step(mesh: jax.sharding.Mesh, state_sharding: Any) -> Callable:
  """``train_step`` jitted with explicit shardings: state replicated, batch
  sharded over 'data', metrics replicated. The state is donated."""
  replicated = sharding.replicated(mesh)
  return jax.jit(train_step, donate_argnums=0,
                 in_shardings=(state_sharding, sharding.data_sharding(mesh), replicated),
                 out_shardings=(state_sharding, replicated))


# ------------------------------------------------------------------ the loop

# Keys a rerun in the same workdir may change freely: the step budget (how a
# run is extended) and what only changes what is logged, saved or evaluated.
FREE_TO_CHANGE = ("num_train_steps", "progress_bar", "log_every_steps", "checkpoint_every_steps",
                  "keep_checkpoints", "eval.", "distributed.")


class ConfigChangedError(ValueError):
  """The workdir holds a run of another config."""


class TrainingInterrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM: a checkpoint of ``step`` was saved; rerun to resume."""

  def __init__(self, step: int, workdir: str):
    super().__init__(f"interrupted at step {step}; rerun the same command to resume "
                     f"(workdir {workdir})")
    self.step = step


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def config_changes(saved: Mapping[str, Any], config: ml_collections.ConfigDict
                   ) -> dict[str, list[Any]]:
  """key -> [saved value, new value] for every key that differs, except
  ``FREE_TO_CHANGE`` (keys, and ``eval.*`` and ``distributed.*``: how a run
  is launched, each process with its own ``process_id``)."""
  old, new = _flatten(saved), _flatten(json.loads(config.to_json()))
  return {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k) and not k.startswith(FREE_TO_CHANGE)}


def check_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict,
                         allow_config_change: bool) -> dict[str, list[Any]]:
  """The changes from ``workdir/config.json`` to ``config``.

  Raises:
    ConfigChangedError: when there are changes and ``allow_config_change``
      is False; the message lists them.
  """
  path = workdir / "config.json"
  if not path.is_file():
    return {}
  changes = config_changes(json.loads(path.read_text()), config)
  if changes and not allow_config_change:
    listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    raise ConfigChangedError(
        f"{workdir} holds a run of another config ({listed}). Use a new workdir, or pass "
        "--allow_config_change to continue this run with the changes.")
  return changes


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN/inf; the run stopped."""


def checkpoint_tree(state: TrainState, rng: jax.Array) -> dict[str, Any]:
  """What a checkpoint holds: params, Adam state, step and the base key (of
  one run, or stacked for a population)."""
  tree = {"params": state.params, "opt_state": state.opt_state, "step": state.step,
          "rng": jax.random.key_data(rng)}
  if state.critic_params is not None:
    tree["critic"] = {"params": state.critic_params, "opt_state": state.critic_opt_state}
  return tree


def restore_state(manager: Any, state: TrainState, rng: jax.Array
                  ) -> tuple[int | None, TrainState, jax.Array]:
  """(step, state, rng) from the latest checkpoint, restored into the shapes
  and shardings of ``state``; (None, state, rng) unchanged when there is none.

  Raises:
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
  """
  step, restored = checkpointing.restore_latest(manager, checkpoint_tree(state, rng))
  if restored is None:
    return None, state, rng
  state = state.replace(params=restored["params"], opt_state=restored["opt_state"],
                        step=restored["step"])
  if "critic" in restored:
    state = state.replace(critic_params=restored["critic"]["params"],
                          critic_opt_state=restored["critic"]["opt_state"])
  return step, state, jax.random.wrap_key_data(restored["rng"])


def check_holds_a_batch(dataset: GroundTruthDataset, batch_size: int) -> None:
  """Raises ValueError when ``dataset`` has fewer images than one batch."""
  if len(dataset) < batch_size:
    raise ValueError(f"The dataset has {len(dataset)} images, fewer than batch_size "
                     f"{batch_size}.")


def truncate_metrics(path: pathlib.Path, last_step: int) -> None:
  """Drops rows logged after ``last_step`` (from a run that died after its
  last checkpoint), so the resumed run's rows are not duplicated."""
  if not path.exists():
    return
  rows = [line for line in path.read_text().splitlines()
          if line.strip() and json.loads(line)["step"] <= last_step]
  path.write_text("".join(row + "\n" for row in rows))


UNLOGGED_FILE = "metrics_unlogged.json"


def unlogged_path(workdir: pathlib.Path) -> pathlib.Path:
  return workdir / UNLOGGED_FILE


def save_unlogged_rows(workdir: pathlib.Path, step: int, rows: list[dict[str, Any]]) -> None:
  """Keeps the per-step metrics of an interval cut short by Ctrl-C (steps
  after the last logged row, up to ``step``), so the resumed run's row of
  that interval averages all its steps, as an uninterrupted run's does."""
  record = {"step": int(step), "rows": [{k: float(v) for k, v in r.items()} for r in rows]}
  tmp = unlogged_path(workdir).with_suffix(".tmp")
  tmp.write_text(json.dumps(record))
  tmp.replace(unlogged_path(workdir))


def load_unlogged_rows(workdir: pathlib.Path, step: int) -> list[dict[str, Any]]:
  """The rows ``save_unlogged_rows`` kept at ``step`` (a resume from another
  step, or none kept: [])."""
  path = unlogged_path(workdir)
  if not path.is_file():
    return []
  record = json.loads(path.read_text())
  return record["rows"] if record["step"] == step else []


def first_non_finite(host: list[dict[str, np.ndarray]]) -> int | None:
  """Index of the first step whose metrics say non-finite, or None."""
  bad = [i for i, m in enumerate(host) if m["finite"] < 1.0]
  return bad[0] if bad else None


def non_finite_message(metrics: dict[str, Any], step: int, last_saved: int | None,
                       directory: Any, who: str = "") -> str:
  return (f"Non-finite loss or gradients{who} at step {step} (loss={metrics['loss']}, "
          f"grad_norm={metrics['grad_norm']}). Training stopped; the last good checkpoint is "
          f"step {last_saved} in {directory}.")


def mean_row(host: list[dict[str, np.ndarray]]) -> dict[str, float]:
  """The mean of each logged metric over the steps since the last log."""
  return {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "finite"}


class _InterruptFlag:
  """Sets ``raised`` on SIGINT/SIGTERM while installed (main thread only),
  so the loop can stop at a step boundary; ``restore`` puts the previous
  handlers back."""

  def __init__(self):
    self.raised = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    self.raised = True

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train(config: ml_collections.ConfigDict, workdir: str, *,
          allow_config_change: bool = False) -> TrainState:
  """Trains (resuming from ``workdir/checkpoints`` if there is one) and writes
  metrics.jsonl, TensorBoard events and PNGs to ``workdir``. Evaluation is
  ``betatc_jax.experiment.train_and_evaluate``.

  A rerun in the same workdir continues the run: ``num_train_steps`` may
  grow; any other change is refused unless ``allow_config_change``, and an
  allowed change is recorded in metrics.jsonl (``{"step", "config_change"}``).
  SIGINT or SIGTERM saves a checkpoint at the current step and raises
  ``TrainingInterrupted``.

  Raises:
    ValueError: for an invalid config or model/image mismatch, before the
      workdir is touched; ``ConfigChangedError`` for a workdir of another
      config.
    TrainingInterrupted: on SIGINT/SIGTERM, after the checkpoint.
    checkpointing.CheckpointError: for a checkpoint that cannot be restored.
    NonFiniteLossError: when the loss or gradients become non-finite; the
      last good checkpoint stays.
  """
  from betatc_jax import plotting  # host-side only
  from betatc_jax.logging_utils import MetricWriter, ProgressBar

  validate_config(config)
  sharding.initialize_from_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  dataset = dataset_from_config(config)
  check_holds_a_batch(dataset, config.batch_size)

  workdir_path = pathlib.Path(workdir)
  changes = check_workdir_config(workdir_path, config, allow_config_change)
  is_chief = jax.process_index() == 0
  replicated = sharding.replicated(mesh)

  model = make_model(config, dataset.observation_shape)

  def init(seed):  # traced once, so every process builds the same global arrays
    params, step_key = init_params(model, dataset.observation_shape, seed)
    state = create_train_state(config, None, dataset.observation_shape, len(dataset), params,
                               seed=seed)
    return state, step_key

  state, step_key = jax.jit(init, out_shardings=replicated)(config.seed)
  state_sharding = jax.tree.map(lambda _: replicated, state)
  workdir_path.mkdir(parents=True, exist_ok=True)   # every check has passed

  manager = checkpointing.make_manager(workdir_path, config.keep_checkpoints)
  restored_step, state, step_key = restore_state(manager, state, step_key)
  start_step = int(state.step)
  if is_chief:
    (workdir_path / "config.json").write_text(config.to_json(indent=2))
    truncate_metrics(workdir_path / "metrics.jsonl", start_step)
    if changes:
      with open(workdir_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": start_step, "config_change": changes}) + "\n")
    if restored_step:
      print(f"resuming from step {start_step} of {config.num_train_steps} (workdir {workdir})",
            flush=True)

  step_fn = jit_train_step(mesh, state_sharding)
  writer = MetricWriter(workdir_path, enabled=is_chief)
  # Only MSS estimates TC without bias (for log q(z) and every log q(z_j)).
  unbiased = {config.objective.estimator, config.objective.marginal_estimator or "mss"} == {"mss"}
  progress = ProgressBar(start_step, config.num_train_steps,
                         enabled=is_chief and config.progress_bar,
                         tc_label="tc" if unbiased else f"tc({config.objective.estimator}, offset)")
  last_saved = restored_step
  total = config.num_train_steps
  if start_step >= total and is_chief:
    print(f"workdir {workdir} is already trained to step {start_step} of {total}", flush=True)
  pending: list[dict[str, jax.Array]] = []       # device metrics since the last boundary
  unlogged = load_unlogged_rows(workdir_path, start_step)   # host rows since the last row
  t0, steps_timed = time.perf_counter(), 0
  batches = pipeline.Batches(dataset, config.batch_size, config.seed, start_step,
                             sharding.data_sharding(mesh))
  signals = _InterruptFlag()

  def check_finite(host, first_step):
    bad = first_non_finite(host)
    if bad is not None:
      manager.wait_until_finished()
      raise NonFiniteLossError(non_finite_message(host[bad], first_step + bad + 1, last_saved,
                                                  manager.directory))

  try:
    for step in range(start_step, total):
      if signals.raised:
        host, pending = jax.device_get(pending), []
        check_finite(host, step - len(host))
        manager.wait_until_finished()
        if last_saved != step:
          checkpointing.save(manager, step, checkpoint_tree(state, step_key))
          manager.wait_until_finished()
        if is_chief:
          save_unlogged_rows(workdir_path, step, unlogged + host)
        raise TrainingInterrupted(step, workdir)
      _, batch = next(batches)
      state, metrics = step_fn(state, batch, step_key)
      pending.append(metrics)
      steps_timed += 1
      done = step + 1
      if progress.due():        # at most once a second: wait for this step, move the bar
        jax.block_until_ready(metrics["loss"])
        progress.move_to(done)
      log = done % config.log_every_steps == 0 or done == total
      save = done % config.checkpoint_every_steps == 0 or done == total
      if log or save:
        host, pending = jax.device_get(pending), []
        check_finite(host, done - len(host))
        unlogged += host
      if log:
        elapsed = time.perf_counter() - t0
        row = mean_row(unlogged)
        row.update(step=done, steps_per_sec=steps_timed / elapsed,
                   images_per_sec=steps_timed * config.batch_size / elapsed)
        writer.write(row)
        progress.show(done, row)
        unlogged, t0, steps_timed = [], time.perf_counter(), 0
        if is_chief:
          unlogged_path(workdir_path).unlink(missing_ok=True)
      if save:
        checkpointing.save(manager, done, checkpoint_tree(state, step_key))
        last_saved = done
  finally:
    signals.restore()
    batches.close()
    progress.close()
    writer.close()
    manager.wait_until_finished()

  if is_chief:
    plotting.write_training_pngs(workdir_path, model, jax.device_get(state.params), dataset, config,
                                 jax.random.key(config.seed + 1))
  return state
