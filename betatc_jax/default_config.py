"""The default training config, and the schema every config is checked
against (``config.validate_config``): every key a config may set is here.

``configs/default.py`` re-exports ``get_config``; its docstring says what
the default run does.
"""


import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default config: training, then one section per part."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64               # the paper: 2048 (configs/dsprites_paper.py)
  config.learning_rate = 1e-3
  config.lr_schedule = "constant"      # constant | exponential_per_epoch
  config.lr_decay = 0.95               # exponential_per_epoch: factor per epoch of ceil(N/B) steps
  config.num_train_steps = 7_000
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2_000
  config.keep_checkpoints = 3
  config.progress_bar = True
  config.model = _model()
  config.objective = _objective()
  config.dataset = _dataset()
  config.eval = _evaluation()
  config.selection = _selection()
  config.distributed = _distributed()
  return config


def _model() -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  model.arch = "mlp"            # mlp | conv | seed_conv
  model.latent_dim = 10
  model.output_activation = "none"  # none (logits) | tanh (the seed)
  model.conv_impl = "auto"      # auto (matmul on CPU, lax elsewhere) | lax | matmul
  model.param_init = "flax"     # flax (lecun_normal, zero bias) | torch (PyTorch's defaults)
  model.posterior_scale = "log_var"  # the encoder's scale output: log_var | log_sigma (official)
  return model


def _objective() -> ml_collections.ConfigDict:
  objective = ml_collections.ConfigDict()
  objective.name = "betatc"     # betatc | beta_vae | factorvae | dip_vae_i | dip_vae_ii | annealed_vae
  objective.alpha = 1.0
  objective.beta = 6.0
  objective.gamma = 1.0
  objective.estimator = "mws"   # mws (the official code's) | mss (unbiased) | reference | official_mss
  objective.marginal_estimator = ""   # estimator of each log q(z_j); "" = objective.estimator
  objective.likelihood = "bernoulli"  # bernoulli | clamped_bernoulli (official) | gaussian
  objective.anneal_steps = 0    # 0: no warm-up of dim_kl
  # FactorVAE (objective.name = "factorvae"): recon + KL + factorvae_gamma · TC(discriminator)
  objective.factorvae_gamma = 10.0
  objective.discriminator_layers = 6      # the paper: 6 × 1000, leaky ReLU
  objective.discriminator_width = 1000
  objective.discriminator_learning_rate = 1e-4  # its Adam: the paper's lr, β1, β2
  objective.discriminator_b1 = 0.5
  objective.discriminator_b2 = 0.9
  # DIP-VAE-I/II: recon + KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ (C_ii − 1)², λ_d = factor · λ_od
  objective.dip_lambda_od = 1.0
  objective.dip_lambda_d_factor = 10.0    # disentanglement_lib: 10 for I, 1 for II
  # Annealed VAE: recon + capacity_gamma · |KL − C|, C growing linearly to
  # capacity_max over capacity_steps
  objective.capacity_gamma = 1000.0
  objective.capacity_max = 25.0
  objective.capacity_steps = 100_000
  return objective


def _dataset() -> ml_collections.ConfigDict:
  dataset = ml_collections.ConfigDict()
  dataset.name = "dsprites"     # dsprites | tfds:dsprites | tfds:shapes3d | images
  dataset.path = ""             # dsprites: DeepMind's .npz ("" = procedural); images: the folder
  dataset.subsample = (1, 1, 1, 2, 2)  # procedural: a step per factor
  dataset.data_dir = ""         # tfds data dir; "" = tfds' default
  dataset.split = "train"       # tfds split
  dataset.image_size = 64       # images: output s × s
  dataset.center_crop = 0       # images: centred c × c crop first; 0 = none
  dataset.channels = 3          # images: 3 (RGB) or 1 (grayscale)
  dataset.max_images = 0        # images: keep at most this many; 0 = all
  dataset.every = 1             # images: keep every k-th file
  dataset.skip_bad = False      # images: skip unreadable files instead of failing
  dataset.random_flip = False   # flip training images left-right with p = 1/2 (on device)
  return dataset


def _evaluation() -> ml_collections.ConfigDict:
  evaluation = ml_collections.ConfigDict()
  evaluation.num_images = 8           # images in the reconstruction/traversal PNGs
  evaluation.traversal_range = 2.0    # traversals sweep z_j over [-r, r]
  evaluation.traversal_steps = 9
  evaluation.at_end = True            # run betatc_jax.evaluate after training
  evaluation.num_samples = 10_000     # S of the paper's MIG / ELBO-decomposition estimators

  return evaluation


def _selection() -> ml_collections.ConfigDict:
  """Choosing the seed without labels (betatc_jax.selection): train
  ``members`` candidate seeds for ``steps`` steps, continue the one with the
  highest UDR. Off by default: for the default config, 6 candidates at
  1,000 steps did no better than one seed (results/cpu_selection/NOTES.md)."""
  selection = ml_collections.ConfigDict()
  selection.members = 0         # 0: off; K >= 2 candidates
  selection.steps = 1_000
  return selection


def _distributed() -> ml_collections.ConfigDict:
  distributed = ml_collections.ConfigDict()
  distributed.coordinator_address = ""  # "" = single process (or $JAX_COORDINATOR_ADDRESS)
  distributed.num_processes = 1
  distributed.process_id = 0
  # Seconds without a heartbeat after which JAX ends every process (a lost host).
  distributed.heartbeat_timeout_seconds = 100
  return distributed
