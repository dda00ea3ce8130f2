"""The default training config, and the schema every config is checked
against (``train_lib.validate_config``): every key a config may set is here.

``configs/default.py`` re-exports ``get_config``; its docstring says what
the default run does.
"""


import ml_collections


def get_config() -> ml_collections.ConfigDict:
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

  config.model = ml_collections.ConfigDict()
  config.model.arch = "mlp"            # mlp | conv | seed_conv
  config.model.latent_dim = 10
  config.model.output_activation = "none"  # none (logits) | tanh (the seed)
  config.model.conv_impl = "auto"      # auto (matmul on CPU, lax elsewhere) | lax | matmul
  config.model.param_init = "flax"     # flax (lecun_normal, zero bias) | torch (PyTorch's defaults)
  config.model.posterior_scale = "log_var"  # the encoder's scale output: log_var | log_sigma (official)

  config.objective = ml_collections.ConfigDict()
  config.objective.name = "betatc"     # betatc | beta_vae | factorvae | dip_vae_i | dip_vae_ii | annealed_vae
  config.objective.alpha = 1.0
  config.objective.beta = 6.0
  config.objective.gamma = 1.0
  config.objective.estimator = "mws"   # mws (the official code's) | mss (unbiased) | reference | official_mss
  config.objective.marginal_estimator = ""   # estimator of each log q(z_j); "" = objective.estimator
  config.objective.likelihood = "bernoulli"  # bernoulli | clamped_bernoulli (official) | gaussian
  config.objective.anneal_steps = 0    # 0: no warm-up of dim_kl
  # FactorVAE (objective.name = "factorvae"): recon + KL + factorvae_gamma · TC(discriminator)
  config.objective.factorvae_gamma = 10.0
  config.objective.discriminator_layers = 6      # the paper: 6 × 1000, leaky ReLU
  config.objective.discriminator_width = 1000
  config.objective.discriminator_learning_rate = 1e-4  # its Adam: the paper's lr, β1, β2
  config.objective.discriminator_b1 = 0.5
  config.objective.discriminator_b2 = 0.9
  # DIP-VAE-I/II: recon + KL + λ_od Σ_{i≠j} C_ij² + λ_d Σ (C_ii − 1)², λ_d = factor · λ_od
  config.objective.dip_lambda_od = 1.0
  config.objective.dip_lambda_d_factor = 10.0    # disentanglement_lib: 10 for I, 1 for II
  # Annealed VAE: recon + capacity_gamma · |KL − C|, C growing linearly to
  # capacity_max over capacity_steps
  config.objective.capacity_gamma = 1000.0
  config.objective.capacity_max = 25.0
  config.objective.capacity_steps = 100_000

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "dsprites"     # dsprites | tfds:dsprites | tfds:shapes3d | images
  config.dataset.path = ""             # dsprites: DeepMind's .npz ("" = procedural); images: the folder
  config.dataset.subsample = (1, 1, 1, 2, 2)  # procedural: a step per factor
  config.dataset.data_dir = ""         # tfds data dir; "" = tfds' default
  config.dataset.split = "train"       # tfds split
  config.dataset.image_size = 64       # images: output s × s
  config.dataset.center_crop = 0       # images: centred c × c crop first; 0 = none
  config.dataset.channels = 3          # images: 3 (RGB) or 1 (grayscale)
  config.dataset.max_images = 0        # images: keep at most this many; 0 = all
  config.dataset.every = 1             # images: keep every k-th file
  config.dataset.skip_bad = False      # images: skip unreadable files instead of failing
  config.dataset.random_flip = False   # flip training images left-right with p = 1/2 (on device)

  config.eval = ml_collections.ConfigDict()
  config.eval.num_images = 8           # images in the reconstruction/traversal PNGs
  config.eval.traversal_range = 2.0    # traversals sweep z_j over [-r, r]
  config.eval.traversal_steps = 9
  config.eval.at_end = True            # run betatc_jax.evaluate after training
  config.eval.num_samples = 10_000     # S of the paper's MIG / ELBO-decomposition estimators

  # Choosing the seed without labels (betatc_jax.selection): train `members`
  # candidate seeds for `steps` steps, continue the one with the highest UDR.
  config.selection = ml_collections.ConfigDict()
  config.selection.members = 0         # 0: off; K >= 2 candidates
  config.selection.steps = 1_000

  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = ""  # "" = single process (or $JAX_COORDINATOR_ADDRESS)
  config.distributed.num_processes = 1
  config.distributed.process_id = 0
  # Seconds without a heartbeat after which JAX ends every process (a lost host).
  config.distributed.heartbeat_timeout_seconds = 100
  return config
