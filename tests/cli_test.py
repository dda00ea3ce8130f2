"""A new user's mistakes give clear, early errors: images out of range,
B < 2, a workdir of another config, shape errors; the command line's one
line errors, its resume message and Ctrl-C; the README's loss snippet runs
as pasted."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from betatc_jax import losses, models, train_lib
from test_images import make_folder
from train_test import ROOT, checkpoint_steps, read_rows, small_config

MODEL = models.VAE(arch="mlp", latent_dim=4, image_shape=(64, 64, 1))
X = jnp.full((2, 64, 64, 1), 0.5)


def objective(x, logits, mu, logvar, z):
  return losses.betatc_objective(x, logits, mu, logvar, z, dataset_size=100,
                                 anneal=losses.linear_anneal(0, 0), estimator="mss")


@pytest.fixture(scope="module")
def params():
  return MODEL.init(jax.random.key(0), X, jax.random.key(1))["params"]


@pytest.mark.parametrize("x,match", [
    (jnp.full((2, 64, 64, 1), 128, jnp.uint8), r"dtype uint8: convert .* / 255"),
    (jnp.full((2, 64, 64, 1), 128.0), r"values in \[128, 128\]: divide .* by 255"),
    (jnp.full((2, 64, 64, 1), -0.5), r"values in \[-0.5, -0.5\]\.(\n|$)"),
])
def test_images_outside_float_unit_range_are_refused(params, x, match):
  with pytest.raises(ValueError, match=match):
    MODEL.apply({"params": params}, x, jax.random.key(2))
  with pytest.raises(ValueError, match=match):
    MODEL.apply({"params": params}, x, method=MODEL.encode)
  logits, mu, logvar, z = MODEL.apply({"params": params}, X, jax.random.key(2))
  with pytest.raises(ValueError, match=match):
    objective(x.astype(x.dtype), logits, mu, logvar, z)


def test_the_dtype_check_holds_under_jit_and_the_value_check_costs_nothing_there(params):
  """Under jit only the dtype is checked (trace time); a traced float batch
  passes without a host transfer."""
  apply = jax.jit(lambda x: MODEL.apply({"params": params}, x, jax.random.key(2))[1])
  with pytest.raises(ValueError, match="dtype uint8"):
    apply(jnp.zeros((2, 64, 64, 1), jnp.uint8))
  assert apply(X).shape == (2, 4)


def test_loss_shape_errors_are_value_errors(params):
  logits, mu, logvar, z = MODEL.apply({"params": params}, X, jax.random.key(2))
  with pytest.raises(ValueError):
    objective(X, logits[:, :32], mu, logvar, z)
  with pytest.raises(ValueError):
    objective(X, logits, mu, logvar[:, :3], z)


@pytest.mark.parametrize("estimator", ["mws", "mss", "official_mss", "reference"])
def test_batch_of_one_is_refused_for_every_estimator(tmp_path, estimator):
  with pytest.raises(ValueError, match="batch_size must be >= 2"):
    train_lib.train(small_config(batch_size=1, **{"objective.estimator": estimator}),
                    str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_model_and_image_size_mismatch_fails_before_the_workdir(tmp_path):
  make_folder(tmp_path / "photos")
  config = small_config(**{"model.arch": "seed_conv", "model.output_activation": "tanh",
                           "objective.likelihood": "gaussian", "dataset.name": "images",
                           "dataset.path": str(tmp_path / "photos"), "dataset.image_size": 32,
                           "batch_size": 2})
  with pytest.raises(ValueError, match="needs 64x64 images"):
    train_lib.train(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_workdir_of_another_config_is_refused_unless_allowed(tmp_path):
  """The steps may grow; β may not, unless allowed, and then the change is
  recorded in metrics.jsonl."""
  train_lib.train(small_config(num_train_steps=4), str(tmp_path))
  train_lib.train(small_config(num_train_steps=6), str(tmp_path))          # extended: fine
  saved = (tmp_path / "config.json").read_text()
  with pytest.raises(train_lib.ConfigChangedError,
                     match=r"another config \(objective.beta: 6.0 -> 1.0\).*--allow_config_change"):
    train_lib.train(small_config(num_train_steps=8, **{"objective.beta": 1.0}), str(tmp_path))
  assert (tmp_path / "config.json").read_text() == saved and checkpoint_steps(tmp_path) == [4, 6]
  train_lib.train(small_config(num_train_steps=8, **{"objective.beta": 1.0}), str(tmp_path),
                  allow_config_change=True)
  rows = read_rows(tmp_path)
  assert {"step": 6, "config_change": {"objective.beta": [6.0, 1.0]}} in rows
  assert json.loads((tmp_path / "config.json").read_text())["objective"]["beta"] == 1.0


def run_train(*flags, timeout=300):
  return subprocess.run([sys.executable, "train.py", "--config", "configs/default.py", *flags],
                        cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("flags,message", [
    (["--config.objective.bta=1"], 'error: \'bta\' Did you mean "beta" instead of "bta"?'),
    (["--config.objective.beta=abc"], "error: flag --config.objective.beta=abc: could not "
                                      "convert string to float: 'abc'"),
    (["--config.batch_size=1"], "error: Invalid config: batch_size must be >= 2"),
])
def test_command_line_errors_are_one_line_and_exit_2(tmp_path, flags, message):
  result = run_train("--workdir", str(tmp_path / "w"), *flags)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr
  assert not (tmp_path / "w").exists()


CTRL_C_FLAGS = ["--config.batch_size=32", "--config.dataset.subsample=(1,2,4,4,4)",
                "--config.model.latent_dim=4", "--config.num_train_steps=100000",
                "--config.log_every_steps=10", "--config.checkpoint_every_steps=100000",
                "--config.progress_bar=False", "--config.eval.at_end=False"]


def test_sigint_saves_the_step_and_the_rerun_resumes(tmp_path):
  """A real SIGINT after training started: a checkpoint at the current step,
  the message, exit 130; the rerun says where it resumes."""
  workdir = tmp_path / "w"
  proc = subprocess.Popen([sys.executable, "train.py", "--config", "configs/default.py",
                           "--workdir", str(workdir), *CTRL_C_FLAGS], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 240
  while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
    assert proc.poll() is None and time.time() < deadline, proc.communicate()
    time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  step = int(re.search(r"interrupted at step (\d+); rerun the same command to resume", err)[1])
  assert step >= 20 and checkpoint_steps(workdir) == [step]
  result = run_train("--workdir", str(workdir), *CTRL_C_FLAGS,
                     f"--config.num_train_steps={step + 2}", "--config.log_every_steps=1")
  assert result.returncode == 0, result.stderr
  assert f"resuming from step {step} of {step + 2} (workdir {workdir})" in result.stdout
  assert [r["step"] for r in read_rows(workdir)][-2:] == [step + 1, step + 2]


def test_readme_loss_snippet_runs_as_pasted():
  text = (ROOT / "README.md").read_text()
  block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "betatc_objective" in b)
  namespace = {}
  exec(compile(block, "README.md", "exec"), namespace)
  loss, metrics = namespace["loss"], namespace["metrics"]
  assert np.isfinite(float(loss)) and {"recon", "mi", "tc", "dim_kl", "kl"} <= set(metrics)
  assert jax.tree.structure(namespace["grads"]) == jax.tree.structure(namespace["params"])


def test_traversal_rows_are_labelled_with_latent_and_kl(tmp_path):
  from betatc_jax import plotting
  assert plotting.traversal_labels(np.array([2, 0]), np.array([0.5, 0.0, 3.25])) == [
      "z2  KL 3.25", "z0  KL 0.50"]
  images = np.random.default_rng(0).uniform(size=(3, 5, 8, 8, 1))
  plotting.save_grid(tmp_path / "plain.png", images)
  plotting.save_grid(tmp_path / "labelled.png", images, row_labels=["z0", "z1", "z2"])
  import matplotlib.pyplot as plt
  plain, labelled = plt.imread(tmp_path / "plain.png"), plt.imread(tmp_path / "labelled.png")
  assert labelled.shape[1] > plain.shape[1] + 50         # the label margin
  margin = labelled[:, : labelled.shape[1] - plain.shape[1] - 10, :3]
  assert margin.min() < 0.5                              # text drawn in it
  with pytest.raises(ValueError, match="2 row labels for 3 rows"):
    plotting.save_grid(tmp_path / "bad.png", images, row_labels=["z0", "z1"])


def test_relative_links_in_the_docs_resolve():
  """Every relative link of README.md and docs/*.md names a file or folder."""
  pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
  broken = []
  for page in pages:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
      if "://" in target or target.startswith("mailto:"):
        continue
      if not (page.parent / target).exists():
        broken.append(f"{page.name}: {target}")
  assert not broken, broken
