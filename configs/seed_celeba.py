"""AntixK PyTorch-VAE's own experiment: its configs/betatc_vae.yaml on CelebA.

Command (CelebA cannot be downloaded here; point it at your folder):
  .venv/bin/python train.py --config configs/seed_celeba.py --workdir workdirs/celeba \
      --config.dataset.path=/data/celeba/img_align_celeba

What it sets, as PyTorch-VAE does: its conv net (seed_conv) from
PyTorch's default initialisation, tanh output
and summed-MSE reconstruction (Gaussian), D=10, α=1, β=6, γ=1, 10,000
warm-up steps of the dimension-wise KL, Adam 0.005 decayed ×0.95 per epoch
(ExponentialLR stepped once an epoch), batch 64, 10 epochs, seed 1265, and
its transform: random horizontal flip, CenterCrop(148), Resize(64), RGB. The files are read in
sorted order and the first 162,770 kept: CelebA's own train partition
(000001.jpg–162770.jpg), the split PyTorch-VAE trains on.

PyTorch-VAE's quirks, and what this config does about each:
* Dataset size. Its loss takes N = B / kld_weight = 64 / 0.00025 =
  256,000 instead of the 162,770 training images. We use the true N (it
  enters the estimator's weights through log N and (N − M)/(N·M)).
* Estimator layout. Its strides put 1/N in column 0 instead of on the
  diagonal and add log w once per latent dimension (docs/estimators.md, "Which
  estimator?"). ``objective.estimator = "reference"`` reproduces that layout
  number for number (tested against PyTorch-VAE's code), so results
  compare with PyTorch-VAE runs. For the paper's unbiased estimator use
  ``--config.objective.estimator=mss``.
* Random horizontal flip. PyTorch-VAE flips each training image with p = 0.5
  on the host; we flip on the device, drawn from the step's key, so a
  resumed run sees the same flips (``dataset.random_flip``).

Expect: decoding the 162,770 JPEGs once takes ~1.5 min on 2 CPU cores (1,934
img/s measured on CelebA-sized 178×218 JPEGs, benchmarks/image_folder_speed.py),
then they are cached (2.0 GB) and load in seconds. Training, measured with
this config on 1,280 CelebA-sized JPEGs (``--config.dataset.max_images``):
~380 img/s on 2 CPU cores (AMD EPYC) after compilation, the step size ×0.95
every 20 steps (an epoch of that folder). For CelebA that is ~7 min an epoch
of 2,544 steps and ~1.2 hours for the 10 epochs (extrapolated; CelebA is not
available here). On a GPU, unmeasured: an estimate of well under a minute an
epoch.
"""

from configs import seed_conv


def get_config():
  config = seed_conv.get_config()
  config.seed = 1265
  config.batch_size = 64
  config.learning_rate = 0.005
  config.lr_schedule = "exponential_per_epoch"
  config.lr_decay = 0.95
  config.num_train_steps = 10 * 2_544      # 10 epochs of ceil(162,770 / 64) steps
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2_544
  config.objective.anneal_steps = 10_000
  config.dataset.name = "images"
  config.dataset.path = ""                 # required: --config.dataset.path=.../img_align_celeba
  config.dataset.image_size = 64
  config.dataset.center_crop = 148
  config.dataset.channels = 3
  config.dataset.max_images = 162_770      # CelebA's train partition (the first files)
  config.dataset.random_flip = True
  return config
