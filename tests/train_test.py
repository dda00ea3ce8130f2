"""End-to-end training: outputs, resume, devices, processes, NaN stop, bad configs."""

import json
import os
import pathlib
import socket
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import children
from betatc_jax import run as run_lib
from betatc_jax import state as state_lib
from betatc_jax import step as step_lib
from betatc_jax import config as config_lib
from betatc_jax import hooks, loop
from betatc_jax import checkpointing
from configs import default

ROOT = pathlib.Path(__file__).resolve().parents[1]


def small_config(**overrides):
  config = default.get_config()
  config.batch_size = 32
  config.objective.estimator = "mss"            # the library's estimator, whatever the default
  config.num_train_steps = 12
  config.log_every_steps = 2
  config.checkpoint_every_steps = 6
  config.progress_bar = False
  config.model.latent_dim = 4
  config.dataset.subsample = (1, 2, 4, 4, 4)    # 5,760 images
  config.eval.num_images = 4
  config.eval.traversal_steps = 5
  config.eval.at_end = False                    # evaluate_test covers it
  config.eval.num_samples = 500
  for key, value in overrides.items():
    config_lib.set_config_key(config, key, value)
  return config


def read_rows(workdir):
  return [json.loads(l) for l in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def checkpoint_steps(workdir):
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir()
                if p.name.isdigit())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = small_config()
  state = run_lib.train_run(config, str(workdir))
  return workdir, config, state


def test_outputs(trained):
  workdir, config, state = trained
  rows = read_rows(workdir)
  assert [r["step"] for r in rows] == list(range(2, 13, 2))
  for r in rows:
    for key in ("loss", "recon", "mi", "tc", "dim_kl", "kl", "elbo", "grad_norm", "images_per_sec"):
      assert np.isfinite(r[key]), (key, r)
    # The loss is the β-TCVAE objective of the logged terms (α=γ=1, no warm-up).
    np.testing.assert_allclose(r["loss"], r["recon"] + r["mi"] + 6 * r["tc"] + r["dim_kl"], rtol=1e-4)
  assert rows[-1]["loss"] < rows[0]["loss"]
  assert int(state.step) == 12
  assert checkpoint_steps(workdir) == [6, 12]
  sizes = {name: Image.open(workdir / name).size for name in
           ("reconstructions.png", "samples.png", "traversals.png")}
  assert sizes["reconstructions.png"] == (4 * 65 + 1, 2 * 65 + 1)      # inputs over reconstructions
  assert sizes["samples.png"] == (8 * 65 + 1, 8 * 65 + 1)
  # One row per latent (4 × 65 + 1 pixels high), 5 steps wide plus the labels' margin of 110.
  assert sizes["traversals.png"] == (5 * 65 + 1 + 110, 4 * 65 + 1)
  assert list((workdir / "tb").glob("events.out.tfevents.*"))
  assert json.loads((workdir / "config.json").read_text())["batch_size"] == 32


def test_train_step_is_one_adam_update_with_the_true_grad_norm():
  """The jitted step (the CPU matmul path, the barrier before the norm) equals
  a plain computation: autodiff through XLA's own products, Adam's formulas
  and the global norm of the gradients in float64. (The conv archs' matmul
  gradients are checked in test_models.)"""
  config = small_config(batch_size=8)
  state = state_lib.create_train_state(config, jax.random.key(0), (64, 64, 1), 5_760)
  batch = jnp.asarray(np.random.default_rng(0).integers(0, 2, (8, 64, 64, 1)) * 255, jnp.uint8)
  key = jax.random.key(3)
  new_state, metrics = jax.jit(step_lib.train_step)(state, batch, key)

  x = batch.astype(jnp.float32) / 255.0
  plain = config.copy_and_resolve_references()
  plain.model.conv_impl = "lax"                 # XLA's own convs and autodiff

  def grads_of(cfg):
    model = state_lib.make_model(cfg, (64, 64, 1))

    def loss_fn(params):
      out, mu, logvar, z = model.apply({"params": params}, x, jax.random.fold_in(key, 0))
      return state.objective(x, out, mu, logvar, z, 0, state.weights)[0]
    return jax.jit(jax.grad(loss_fn))(state.params)

  grads = grads_of(plain)
  norm = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in jax.tree.leaves(grads)))
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-4)
  assert metrics["finite"] == 1.0
  # Adam's first step: mu = 0.1·g, nu = 0.001·g² (linear in g, so compared
  # with the plain gradients), and p' = p − lr·ĝ/(|ĝ| + ε) from the state's own
  # mu and nu (that step is ~lr·sign(g), too sensitive to compare with g).
  adam = new_state.opt_state[0]
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
  jax.tree.map(lambda m, g: np.testing.assert_allclose(m, 0.1 * g, rtol=1e-3, atol=1e-5 * scale),
               adam.mu, grads)
  jax.tree.map(lambda v, g: np.testing.assert_allclose(v, 1e-3 * g ** 2, rtol=1e-3,
                                                       atol=1e-8 * scale ** 2), adam.nu, grads)
  want = jax.tree.map(lambda p, m, v: p - config.learning_rate * (m / 0.1) / (jnp.sqrt(v / 1e-3) + 1e-8),
                      state.params, adam.mu, adam.nu)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new_state.params, want)
  assert int(new_state.step) == 1


def test_resume_equals_uninterrupted(trained, tmp_path):
  workdir, config, _ = trained
  run_lib.train_run(small_config(num_train_steps=6), str(tmp_path))
  assert checkpoint_steps(tmp_path) == [6]
  run_lib.train_run(small_config(num_train_steps=12), str(tmp_path))
  resumed, uninterrupted = read_rows(tmp_path), read_rows(workdir)
  assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted]
  for a, b in zip(resumed, uninterrupted):
    for key in ("loss", "recon", "mi", "tc", "dim_kl", "kl"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=f"{key} at step {a['step']}")


LOSS_TERMS = ("loss", "recon", "mi", "tc", "dim_kl", "kl")


def test_a_row_averages_every_step_since_the_last_row(tmp_path):
  """With checkpoints every 6 steps and rows every 4, the row of step 8 is
  the mean of steps 5-8 (a run logging every step gives them)."""
  run_lib.train_run(small_config(log_every_steps=1), str(tmp_path / "each"))
  run_lib.train_run(small_config(log_every_steps=4, checkpoint_every_steps=6), str(tmp_path / "four"))
  each = {r["step"]: r for r in read_rows(tmp_path / "each")}
  rows = read_rows(tmp_path / "four")
  assert [r["step"] for r in rows] == [4, 8, 12]
  for row in rows:
    for key in LOSS_TERMS:
      want = np.mean([each[s][key] for s in range(row["step"] - 3, row["step"] + 1)])
      np.testing.assert_allclose(row[key], want, rtol=1e-6, err_msg=f"{key} at {row['step']}")


def interrupt_after(monkeypatch, step: int) -> None:
  """As if Ctrl-C came once ``step`` updates were dispatched: the loop's
  interrupt flag reads raised from then on."""
  dispatched = {"step": 0}
  real_tick = hooks.Progress.tick

  def tick(self, metrics, at):
    dispatched["step"] = at
    real_tick(self, metrics, at)

  class Interrupted(hooks.Interrupt):
    @property
    def raised(self):
      return dispatched["step"] >= step

    @raised.setter
    def raised(self, value):
      pass

  monkeypatch.setattr(hooks.Progress, "tick", tick)
  monkeypatch.setattr(hooks, "Interrupt", Interrupted)


def test_the_row_spanning_a_ctrl_c_averages_the_steps_before_it_too(trained, tmp_path,
                                                                     monkeypatch):
  """Interrupted before update 5 (rows every 2 steps): steps 4-5 are
  kept with the checkpoint, and the resumed run's rows equal the
  uninterrupted run's, the row of step 6 included."""
  workdir, config, _ = trained
  with monkeypatch.context() as patch:
    interrupt_after(patch, 5)
    with pytest.raises(loop.TrainingInterrupted, match="interrupted at step 5"):
      run_lib.train_run(small_config(), str(tmp_path))
  assert checkpoint_steps(tmp_path) == [5]
  kept = checkpointing.read_records(tmp_path)["unlogged"]["run"]
  assert len(kept) == 1 and kept[0]["loss"] > 0            # step 5, not yet in a row
  run_lib.train_run(small_config(), str(tmp_path))
  resumed, uninterrupted = read_rows(tmp_path), read_rows(workdir)
  assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted]
  for a, b in zip(resumed, uninterrupted):
    for key in LOSS_TERMS:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=f"{key} at step {a['step']}")


def test_finished_run_is_not_retrained(trained, capsys):
  workdir, config, _ = trained
  before = read_rows(workdir)
  state = run_lib.train_run(config, str(workdir))
  assert int(state.step) == 12 and read_rows(workdir) == before
  assert f"workdir {workdir} is already trained to step 12 of 12" in capsys.readouterr().out


def test_a_finished_runs_evaluation_is_kept_unless_asked_again(tmp_path, capsys):
  """The rerun of a finished command prints the saved evaluation instead of
  computing it again; ``reevaluate`` (train.py --reevaluate) recomputes it."""
  config = small_config(num_train_steps=4, **{"eval.at_end": True})
  run_lib.train_and_evaluate(config, str(tmp_path))
  path = tmp_path / "eval.json"
  first = path.read_text()
  path.write_text(first.replace('"mig":', '"mig_marker": 1, "mig":', 1))  # so we see a rewrite
  capsys.readouterr()
  run_lib.train_and_evaluate(config, str(tmp_path))
  out = capsys.readouterr().out
  assert f"{path} already evaluates step 4 (--reevaluate to compute it again)" in out
  assert "MIG (paper)" in out and "mig_marker" in path.read_text()
  run_lib.train_and_evaluate(config, str(tmp_path), reevaluate=True)
  again, before = json.loads(path.read_text()), json.loads(first)
  assert set(again.pop("phase_seconds")) == set(before.pop("phase_seconds"))  # times differ
  assert again == before


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  real_step = step_lib.train_step

  def poisoned_step(state, batch, key):
    new_state, metrics = real_step(state, batch, key)
    bad = state.step >= 7                       # the 8th update goes non-finite
    metrics["loss"] = jnp.where(bad, jnp.nan, metrics["loss"])
    metrics["finite"] = jnp.where(bad, 0.0, metrics["finite"])
    return new_state, metrics

  monkeypatch.setattr(step_lib, "train_step", poisoned_step)
  with pytest.raises(loop.NonFiniteLossError, match="at step 8 .*last good checkpoint is step 6"):
    run_lib.train_run(small_config(), str(tmp_path))
  assert checkpoint_steps(tmp_path) == [6]
  assert [r["step"] for r in read_rows(tmp_path)] == [2, 4, 6]


def test_real_divergence_is_caught(tmp_path):
  """A learning rate of 1e30 sends the parameters to inf within a few steps."""
  with pytest.raises(loop.NonFiniteLossError, match="Non-finite loss or gradients at step"):
    run_lib.train_run(small_config(learning_rate=1e30), str(tmp_path))
  assert not (tmp_path / "checkpoints").exists() or checkpoint_steps(tmp_path) in ([], [6])


def test_corrupt_checkpoint_is_an_error_not_a_restart(trained, tmp_path):
  workdir, _, _ = trained
  import shutil
  shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
  for f in (tmp_path / "checkpoints" / "12").rglob("*"):
    if f.is_file() and f.stat().st_size > 1000:
      f.write_bytes(b"\0" * 100)
  with pytest.raises(checkpointing.CheckpointError, match="Cannot restore checkpoint"):
    run_lib.train_run(small_config(num_train_steps=20), str(tmp_path))
  assert checkpoint_steps(tmp_path) == [6, 12]   # nothing overwritten


def test_incompatible_checkpoint_is_an_error(trained, tmp_path):
  workdir, _, _ = trained
  import shutil
  shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
  with pytest.raises(checkpointing.CheckpointError):
    run_lib.train_run(small_config(**{"model.latent_dim": 5, "num_train_steps": 20}),
                                 str(tmp_path))
  assert checkpoint_steps(tmp_path) == [6, 12]


def test_a_process_of_several_writes_its_runs_through_a_one_process_child(tmp_path, monkeypatch):
  """In a run of several processes Orbax cannot save one process's arrays, so
  ``save_runs`` writes them from a child: the checkpoint restores to the same
  tree (Adam's namedtuples included), and a child's failure is a
  CheckpointError that quotes it."""
  import optax
  params = {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
  tree = {"params": params, "opt_state": jax.device_get(optax.adam(1e-3).init(params)),
          "step": np.int32(7)}
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  checkpointing.save_runs([(tmp_path / "run", 7, tree)], keep=1)
  monkeypatch.undo()
  manager = checkpointing.make_manager(tmp_path / "run", 1)
  step, restored, records = checkpointing.restore_latest(manager, jax.tree.map(jnp.asarray, tree))
  manager.close()
  assert step == 7 and records == {}
  assert jax.tree.structure(restored) == jax.tree.structure(tree)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(a, b)
  (tmp_path / "file").write_text("")
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  with pytest.raises(checkpointing.CheckpointError, match="Writing the checkpoints of .*file"):
    checkpointing.save_runs([(tmp_path / "file" / "run", 7, tree)], keep=1)


@pytest.mark.parametrize("overrides,match", [
    ({"objective.beta": -1.0}, "objective.beta must be >= 0"),
    ({"model.arch": "resnet"}, "model.arch must be one of"),
    ({"objective.estimator": "iwae"}, "objective.estimator must be one of"),
    ({"objective.name": "infovae"}, "objective.name must be one of"),
    ({"batch_size": 1}, "batch_size must be >= 2"),
    ({"model.output_activation": "tanh"}, "Bernoulli likelihood needs logits"),
    ({"dataset.name": "mnist"}, "Unknown dataset 'mnist'"),
    ({"batch_size": 8192}, "fewer than batch_size"),
])
def test_bad_config_fails_before_training(tmp_path, overrides, match):
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=match):
    run_lib.train_run(small_config(**overrides), str(workdir))
  assert not workdir.exists()


def test_unknown_config_key(tmp_path):
  config = small_config()
  config.unlock()
  config.objective.betta = 4.0
  with pytest.raises(ValueError, match=r"Unknown config key\(s\): objective.betta"):
    run_lib.train_run(config, str(tmp_path / "w"))


def test_train_py_overrides_and_rejects_unknown_flags(tmp_path):
  cmd = [sys.executable, "train.py", "--config", "configs/default.py",
         "--workdir", str(tmp_path / "w"), "--config.objective.bogus=1"]
  result = children.run(cmd, cwd=ROOT)
  assert result.returncode != 0 and "bogus" in result.stderr
  assert not (tmp_path / "w").exists()


# --------------------------------------------------------- devices and processes

_RUNNER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax
    from betatc_jax import run as run_lib
    from train_test import small_config
    overrides = json.loads(sys.argv[2])
    run_lib.train_run(small_config(num_train_steps=6, **overrides), sys.argv[1])
    print("DEVICES", jax.device_count())
""")


def _run(workdir, overrides, env_extra):
  env = {**os.environ, **env_extra}
  code = _RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"))
  return children.Child([sys.executable, "-c", code, str(workdir), json.dumps(overrides)],
                        watch=[workdir], env=env)


def _assert_same_losses(a, b, rtol):
  ra, rb = read_rows(a), read_rows(b)
  assert [r["step"] for r in ra] == [r["step"] for r in rb] == [2, 4, 6]
  for x, y in zip(ra, rb):
    for key in ("loss", "recon", "mi", "tc", "dim_kl"):
      np.testing.assert_allclose(x[key], y[key], rtol=rtol, atol=1e-4, err_msg=key)


def test_four_devices_equal_one(tmp_path):
  one = _run(tmp_path / "one", {}, {})
  four = _run(tmp_path / "four", {}, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  outs = children.finish([one, four])
  assert all(rc == 0 for rc, _, _ in outs), [err[-6000:] for _, _, err in outs]
  assert "DEVICES 1" in outs[0][1] and "DEVICES 4" in outs[1][1]
  _assert_same_losses(tmp_path / "one", tmp_path / "four", rtol=1e-4)


def test_batch_not_divisible_by_devices(tmp_path):
  proc = _run(tmp_path / "w", {"batch_size": 30},
              {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  (returncode, _, err), = children.finish([proc])
  assert returncode != 0 and "not divisible by the number of devices (4)" in err


def test_two_processes_equal_one(tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [_run(tmp_path / "two", {"distributed.coordinator_address": f"127.0.0.1:{port}",
                                   "distributed.num_processes": 2, "distributed.process_id": i},
                {"XLA_FLAGS": ""}) for i in range(2)]
  one = _run(tmp_path / "one", {}, {})
  outs = children.finish(procs + [one])
  assert all(rc == 0 for rc, _, _ in outs), [err[-6000:] for _, _, err in outs]
  assert "DEVICES 2" in outs[0][1]
  _assert_same_losses(tmp_path / "one", tmp_path / "two", rtol=1e-4)
