"""A new user's mistakes give clear, early errors: images out of range
(and, under jit, checkify's opt-in check), batch sizes that differ, B < 2,
a workdir of another config, shape errors; the command line's one-line
errors (OS errors with their message and path, a missing config file), its
resume message, Ctrl-C, and a progress bar that moves between rows."""

import json
import pathlib
import re
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import children
from betatc_jax import run as run_lib
from betatc_jax import workdir as wd
from betatc_jax import losses, models
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


def test_batch_sizes_must_agree_at_trace_time(params):
  """Images of batch 2 with codes of batch 4 are refused under jit (a
  mismatch the shape checks alone let through: the loss broadcast)."""
  logits, mu, logvar, z = MODEL.apply({"params": params}, X, jax.random.key(2))
  double = lambda a: jnp.concatenate([a, a])
  with pytest.raises(ValueError, match=r"batch sizes differ \(x 2, decoder_out 2, mu 4, "
                                       r"logvar 4, z 4\)"):
    jax.jit(objective)(X, logits, double(mu), double(logvar), double(z))
  with pytest.raises(ValueError, match="batch sizes differ"):
    losses.beta_vae_objective(X, logits, double(mu), double(logvar))


def _hlo(function, *args) -> str:
  text = jax.jit(function).lower(*args).compile().as_text()
  # Names and source locations aside (the ``jit_<name>``, metadata, the
  # file/function/stack tables and instruction numbers), the program itself.
  text = re.sub(r"metadata=\{[^}]*\}|jit_\w+|^(File|Function|Stack)\w*$|^\d+ .*$", "", text,
                flags=re.M)
  return re.sub(r"([A-Za-z_][\w\-]*)\.\d+\b", r"\1", text)


def test_images_in_0_255_under_jit_are_caught_by_checkify_and_cost_nothing_without(
    params, monkeypatch):
  """Under jit the value check is a checkify.debug_check: checkify names
  [0, 255] images, passes [0, 1] ones, and without checkify the compiled
  program is the one without any check."""
  from jax.experimental import checkify
  from betatc_jax import checks

  def make_loss():         # a new function each time: nothing comes from jit's trace cache
    def loss(params, x):
      logits, mu, logvar, z = MODEL.apply({"params": params}, x, jax.random.key(2))
      return objective(x, logits, mu, logvar, z)[0]
    return loss

  loss = make_loss()
  checked = checkify.checkify(jax.jit(loss), errors=checkify.user_checks)
  error, _ = checked(params, X * 255.0)
  with pytest.raises(Exception, match=r"VAE.encode takes images in \[0, 1\], got values in "
                                      r"\[127.5, 127.5\]"):
    error.throw()
  error, value = checked(params, X)
  assert error.get() is None and value == jax.jit(loss)(params, X)
  with_check = _hlo(make_loss(), params, X)
  monkeypatch.setattr(checks.checkify, "debug_check", lambda *args, **kwargs: None)
  assert _hlo(make_loss(), params, X) == with_check


@pytest.mark.parametrize("estimator", ["mws", "mss", "official_mss", "reference"])
def test_batch_of_one_is_refused_for_every_estimator(tmp_path, estimator):
  with pytest.raises(ValueError, match="batch_size must be >= 2"):
    run_lib.train_run(small_config(batch_size=1, **{"objective.estimator": estimator}),
                    str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_model_and_image_size_mismatch_fails_before_the_workdir(tmp_path):
  make_folder(tmp_path / "photos")
  config = small_config(**{"model.arch": "seed_conv", "model.output_activation": "tanh",
                           "objective.likelihood": "gaussian", "dataset.name": "images",
                           "dataset.path": str(tmp_path / "photos"), "dataset.image_size": 32,
                           "batch_size": 2})
  with pytest.raises(ValueError, match="needs 64x64 images"):
    run_lib.train_run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_workdir_of_another_config_is_refused_unless_allowed(tmp_path):
  """The steps may grow; β may not, unless allowed, and then the change is
  recorded in metrics.jsonl."""
  run_lib.train_run(small_config(num_train_steps=4), str(tmp_path))
  run_lib.train_run(small_config(num_train_steps=6), str(tmp_path))          # extended: fine
  saved = (tmp_path / "config.json").read_text()
  with pytest.raises(wd.ConfigChangedError,
                     match=r"another config \(objective.beta: 6.0 -> 1.0\).*--allow_config_change"):
    run_lib.train_run(small_config(num_train_steps=8, **{"objective.beta": 1.0}), str(tmp_path))
  assert (tmp_path / "config.json").read_text() == saved and checkpoint_steps(tmp_path) == [4, 6]
  run_lib.train_run(small_config(num_train_steps=8, **{"objective.beta": 1.0}), str(tmp_path),
                  allow_config_change=True)
  rows = read_rows(tmp_path)
  assert {"step": 6, "config_change": {"objective.beta": [6.0, 1.0]}} in rows
  assert json.loads((tmp_path / "config.json").read_text())["objective"]["beta"] == 1.0


def run_train(*flags, watch=()):
  return children.run([sys.executable, "train.py", "--config", "configs/default.py", *flags],
                      cwd=ROOT, watch=watch)


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


def unwritable_folder(tmp_path):
  """A folder this process cannot create entries in (as root, where mode
  bits do not bind, /sys, which refuses new entries); None if there is none."""
  folder = tmp_path / "read_only"
  folder.mkdir()
  folder.chmod(0o500)
  try:
    (folder / "probe").mkdir()
  except PermissionError:
    return folder
  for candidate in (pathlib.Path("/sys"), pathlib.Path("/proc")):
    try:
      (candidate / "betatc_jax_probe").mkdir()
    except PermissionError:
      return candidate
    except OSError:
      continue
  return None


def test_os_errors_print_their_message_and_path_not_the_errno(tmp_path):
  """A workdir under a file, or in a folder that cannot be written, is one
  line naming the reason and the path, exit 2 (not ``error: 20``)."""
  (tmp_path / "a_file").write_text("")
  result = run_train("--workdir", str(tmp_path / "a_file" / "sub"), "--config.num_train_steps=1")
  assert result.returncode == 2
  assert result.stderr.strip() == f"error: Not a directory: {tmp_path / 'a_file' / 'sub'}", \
      result.stderr
  folder = unwritable_folder(tmp_path)
  if folder is None:
    pytest.skip("no folder here refuses this process's writes")
  result = run_train("--workdir", str(folder / "w"), "--config.num_train_steps=1")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and re.fullmatch(
      rf"error: (Permission denied|Operation not permitted): {re.escape(str(folder / 'w'))}",
      lines[0]), result.stderr


def test_one_line_reads_os_errors_and_quoted_messages():
  from betatc_jax import cli
  assert cli.one_line(OSError(28, "No space left on device", "/data/w/checkpoints")) == \
      "No space left on device: /data/w/checkpoints"
  assert cli.one_line(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == \
      "Invalid cross-device link: /a -> /b"
  assert cli.one_line(FileNotFoundError("No checkpoint in w/checkpoints: train first.")) == \
      "No checkpoint in w/checkpoints: train first."
  assert cli.one_line(KeyError("'bta' Did you mean \"beta\"?")) == "'bta' Did you mean \"beta\"?"
  assert cli.one_line(ValueError("two\nlines")) == "two lines"


def test_a_missing_config_file_is_named(tmp_path):
  result = children.run([sys.executable, "train.py", "--config", "configs/nope.py",
                         "--workdir", str(tmp_path / "w")], cwd=ROOT)
  assert result.returncode == 2
  assert result.stderr.strip() == "error: config file configs/nope.py does not exist"


CTRL_C_FLAGS = ["--config.batch_size=32", "--config.dataset.subsample=(1,2,4,4,4)",
                "--config.model.latent_dim=4", "--config.num_train_steps=100000",
                "--config.log_every_steps=10", "--config.checkpoint_every_steps=100000",
                "--config.progress_bar=False", "--config.eval.at_end=False"]


def test_sigint_saves_the_step_and_the_rerun_resumes(tmp_path):
  """A real SIGINT after training started: a checkpoint at the current step,
  the message, exit 130; the rerun says where it resumes."""
  workdir = tmp_path / "w"
  proc = children.Child([sys.executable, "train.py", "--config", "configs/default.py",
                         "--workdir", str(workdir), *CTRL_C_FLAGS], cwd=ROOT, watch=[workdir])
  metrics = workdir / "metrics.jsonl"
  children.wait_until(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 2,
                      [proc], "two logged rows")
  proc.send_signal(signal.SIGINT)
  (returncode, out, err), = children.finish([proc])
  assert returncode == 130, err
  step = int(re.search(r"interrupted at step (\d+); rerun the same command to resume", err)[1])
  assert step >= 20 and checkpoint_steps(workdir) == [step]
  result = run_train("--workdir", str(workdir), *CTRL_C_FLAGS,
                     f"--config.num_train_steps={step + 2}", "--config.log_every_steps=1")
  assert result.returncode == 0, result.stderr
  assert f"resuming from step {step} of {step + 2} (workdir {workdir})" in result.stdout
  assert [r["step"] for r in read_rows(workdir)][-2:] == [step + 1, step + 2]


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


def test_the_progress_bar_moves_between_logged_rows(monkeypatch):
  """The loop moves the bar whenever ``due()``: once a second, however long
  the logging interval; a disabled bar is never due (no waits in the loop)."""
  from betatc_jax import logging_utils
  now = [100.0]
  monkeypatch.setattr(logging_utils.time, "monotonic", lambda: now[0])
  bar = logging_utils.ProgressBar(0, 1000, enabled=True, interval=1.0)
  assert not bar.due()
  now[0] += 1.5
  assert bar.due()
  bar.move_to(37)
  assert bar._bar.n == 37 and not bar.due()
  bar.show(100, {"recon": 1.0, "kl": 2.0, "tc": 3.0})
  assert bar._bar.n == 100 and bar._bar.postfix == "recon=1.0, kl=2.00, tc=3.00"
  bar.close()
  now[0] += 10
  assert not logging_utils.ProgressBar(0, 10, enabled=False).due()
