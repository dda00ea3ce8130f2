"""AntixK PyTorch-VAE's BetaTCVAE: its conv network and hyperparameters.

Gaussian likelihood (summed MSE / B) on a tanh output, D=10, α=1, β=6, γ=1,
200 warm-up steps of the dimension-wise KL, Adam 5e-3, batch 64, PyTorch's
default initialisation (``model.param_init = "torch"``: PyTorch-VAE sets none
of its own) and its (biased) column-layout estimator, so numbers compare with
PyTorch-VAE runs. Images are 0/1 dSprites, as its loss sees [0, 1]
targets. Its training step equals PyTorch-VAE's, step for step
(tests/seed_parity_test.py).

Command:
  .venv/bin/python train.py --config configs/seed_conv.py --workdir workdirs/seed_conv

Expect: ~270 img/s on 2 CPU cores (the matmul convolutions that
model.conv_impl="auto" picks on CPU), so 1,000 steps take about 4 minutes. Use estimator=mss for the unbiased estimator:
  .venv/bin/python train.py --config configs/seed_conv.py --config.objective.estimator=mss ...
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 64
  config.learning_rate = 5e-3
  config.num_train_steps = 1_000
  config.model.arch = "seed_conv"
  config.model.output_activation = "tanh"
  config.model.param_init = "torch"
  config.objective.likelihood = "gaussian"
  config.objective.estimator = "reference"
  config.objective.anneal_steps = 200
  return config
