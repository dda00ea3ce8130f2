"""The baselines train: FactorVAE's discriminator (units, a Monte-Carlo
check of its TC estimate, resume with it), every objective's loss falls,
in a population and alone, and bad settings fail before any work."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from betatc_jax import run as run_lib
from betatc_jax import state as state_lib
from betatc_jax import workdir as wd
from betatc_jax import members as members_lib
from betatc_jax import discriminator, population
from train_test import checkpoint_steps, read_rows, small_config


def test_permute_dims_permutes_each_column_independently():
  z = jnp.arange(40.0).reshape(10, 4) + 100 * jnp.arange(4.0)
  out = np.asarray(discriminator.permute_dims(z, jax.random.key(0)))
  for j in range(4):
    np.testing.assert_array_equal(np.sort(out[:, j]), np.asarray(z[:, j]))
  rows = {tuple(r) for r in np.asarray(z)}
  assert sum(tuple(r) in rows for r in out) < 10          # rows are broken up


def test_discriminator_loss_and_tc_match_numpy():
  rng = np.random.default_rng(0)
  real, perm = rng.normal(size=(2, 7, 2)).astype(np.float32)
  log_softmax = lambda l: l - np.log(np.exp(l).sum(1, keepdims=True))
  want = 0.5 * (-log_softmax(real)[:, 0].mean() - log_softmax(perm)[:, 1].mean())
  np.testing.assert_allclose(discriminator.discriminator_loss(real, perm), want, rtol=1e-5)
  np.testing.assert_allclose(discriminator.density_ratio_tc(real), (real[:, 0] - real[:, 1]).mean(),
                             rtol=1e-5)


def test_discriminator_estimates_a_known_total_correlation():
  """Monte Carlo: z ~ N(0, [[1, ρ], [ρ, 1]]) has TC = −½ log(1 − ρ²) = 0.511
  for ρ = 0.8. A discriminator trained on batch permutations (our
  discriminator_step's recipe, small net, 600 steps of 512) reads it within 0.15;
  with ρ = 0 it reads ~0."""
  def estimate(rho, seed=0):
    net = discriminator.Discriminator(num_layers=2, width=64)
    tx = optax.adam(1e-3)
    params = net.init(jax.random.key(seed), jnp.zeros((1, 2)))["params"]
    chol = jnp.linalg.cholesky(jnp.array([[1.0, rho], [rho, 1.0]]))

    @jax.jit
    def step(carry, key):
      params, opt = carry
      z = jax.random.normal(key, (512, 2)) @ chol.T
      perm = discriminator.permute_dims(z, jax.random.fold_in(key, 1))
      loss_fn = lambda p: discriminator.discriminator_loss(net.apply({"params": p}, z),
                                                    net.apply({"params": p}, perm))
      grads = jax.grad(loss_fn)(params)
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None

    keys = jax.random.split(jax.random.key(seed + 1), 600)
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), keys)
    z = jax.random.normal(jax.random.key(99), (20_000, 2)) @ chol.T
    return float(discriminator.density_ratio_tc(net.apply({"params": params}, z)))

  assert estimate(0.8) == pytest.approx(-0.5 * math.log(1 - 0.8 ** 2), abs=0.15)
  assert abs(estimate(0.0)) <= 0.1


BASELINES = {
    "betatc": {"objective.name": "betatc"},
    "beta_vae": {"objective.name": "beta_vae", "objective.beta": 4.0},
    "dip_vae_i": {"objective.name": "dip_vae_i", "objective.dip_lambda_od": 10.0},
    "dip_vae_ii": {"objective.name": "dip_vae_ii", "objective.dip_lambda_od": 10.0,
                   "objective.dip_lambda_d_factor": 1.0},
    "annealed_vae": {"objective.name": "annealed_vae", "objective.capacity_max": 10.0,
                     "objective.capacity_steps": 20},
}


def _falls(rows, key="loss"):
  first, last = np.mean([r[key] for r in rows[:2]]), np.mean([r[key] for r in rows[-2:]])
  return last < 0.8 * first, (first, last)


def test_every_objective_trains_in_one_population(tmp_path):
  """β-TCVAE, β-VAE, DIP-VAE-I/II and the annealed VAE in one population:
  each member's loss falls over 40 steps, with its own terms logged."""
  members = [members_lib.Member(name, {"seed": 3, **o}) for name, o in BASELINES.items()]
  config = small_config(num_train_steps=40, log_every_steps=5, checkpoint_every_steps=40,
                        learning_rate=3e-4)
  population.train_population(config, members, tmp_path)
  for name in BASELINES:
    rows = read_rows(wd.member_dir(tmp_path, name))
    # The annealed VAE's γ·|KL − C| keeps its loss up while C grows: its
    # reconstruction must fall, its loss only by 5%.
    ok, values = _falls(rows, "recon" if name == "annealed_vae" else "loss")
    assert ok, (name, values)
  annealed = read_rows(wd.member_dir(tmp_path, "annealed_vae"))
  assert annealed[-1]["loss"] < 0.95 * annealed[0]["loss"]
  dip = read_rows(wd.member_dir(tmp_path, "dip_vae_i"))
  assert dip[0]["dip_penalty"] > 0
  # C grows over 20 steps to C_max = 10: the mean over the first logged 5 updates (steps 0-4) is 1.0.
  assert annealed[0]["capacity"] == pytest.approx(1.0) and annealed[-1]["capacity"] == 10.0


@pytest.fixture(scope="module")
def factorvae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("factorvae")
  config = small_config(**{"objective.name": "factorvae", "objective.discriminator_layers": 2,
                           "objective.discriminator_width": 64, "num_train_steps": 30,
                           "log_every_steps": 5, "checkpoint_every_steps": 15,
                           "learning_rate": 3e-4})
  state = run_lib.train_run(config, str(workdir))
  return workdir, config, state


def test_factorvae_trains_and_logs_both_tc_estimates(factorvae_run):
  workdir, _, state = factorvae_run
  rows = read_rows(workdir)
  ok, values = _falls(rows)
  assert ok, values
  for r in rows:       # the discriminator's estimate next to MSS's, of the same batch
    assert np.isfinite(r["discriminator_tc"]) and np.isfinite(r["tc"]) and r["discriminator_loss"] > 0
  # The discriminator was trained: its params moved from their init.
  initial = state_lib.discriminator_fields(factorvae_run[1], factorvae_run[1].seed)["discriminator_params"]
  moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
           zip(jax.tree.leaves(state.discriminator_params), jax.tree.leaves(initial))]
  assert min(moved) > 1e-4 and int(state.step) == 30


def test_factorvae_resume_keeps_the_discriminator(factorvae_run, tmp_path):
  """15 + 15 steps equals 30: the checkpoint holds the discriminator and its
  Adam state (a restart from a fresh discriminator would differ)."""
  workdir, config, state = factorvae_run
  assert checkpoint_steps(workdir) == [15, 30]
  first = config.copy_and_resolve_references()
  first.num_train_steps = 15
  run_lib.train_run(first, str(tmp_path))
  resumed = run_lib.train_run(config, str(tmp_path))
  for a, b in zip(jax.tree.leaves(resumed.discriminator_params), jax.tree.leaves(state.discriminator_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_in_the_earlier_layout_resumes(factorvae_run, tmp_path):
  """A checkpoint as earlier versions wrote it (one unnamed Orbax item, no
  records, FactorVAE's discriminator under its old name "critic") resumes:
  15 steps from it equal the uninterrupted run's last 15."""
  import json
  import shutil

  import orbax.checkpoint as ocp
  workdir, config, state = factorvae_run
  tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / "15" / "default")
  tree["critic"] = tree.pop("discriminator")
  old = ocp.CheckpointManager(tmp_path / "checkpoints",
                              options=ocp.CheckpointManagerOptions(create=True),
                              item_handlers=ocp.StandardCheckpointHandler())
  old.save(15, args=ocp.args.StandardSave(tree), force=True)
  old.wait_until_finished()
  old.close()
  assert sorted(p.name for p in (tmp_path / "checkpoints" / "15").iterdir()
                if p.is_dir() and not p.name.startswith("_")) == ["default"]
  shutil.copy(workdir / "config.json", tmp_path / "config.json")
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  (tmp_path / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 15))
  resumed = run_lib.train_run(config, str(tmp_path))
  assert int(resumed.step) == 30
  for a, b in zip(jax.tree.leaves((resumed.params, resumed.discriminator_params)),
                  jax.tree.leaves((state.params, state.discriminator_params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert [r["step"] for r in read_rows(tmp_path)] == [r["step"] for r in rows]


def test_factorvae_population_member_equals_its_single_run(factorvae_run, tmp_path):
  workdir, config, _ = factorvae_run
  member = members_lib.Member("fvae", {"seed": config.seed})
  population.train_population(config, [member,
                                       members_lib.Member("fvae_g20", {
                                           "seed": 1, "objective.factorvae_gamma": 20.0})],
                              tmp_path)
  single, pop = read_rows(workdir), read_rows(wd.member_dir(tmp_path, "fvae"))
  assert [r["step"] for r in single] == [r["step"] for r in pop]
  for a, b in zip(single, pop):
    for key in ("loss", "discriminator_tc", "discriminator_loss", "tc"):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-4, err_msg=key)


@pytest.mark.parametrize("overrides,match", [
    ({"objective.name": "factorvae", "objective.discriminator_layers": 0}, "discriminator_layers"),
    ({"objective.factorvae_gamma": -1.0}, "factorvae_gamma"),
    ({"objective.dip_lambda_od": -2.0}, "dip_lambda_od"),
    ({"objective.capacity_max": -1.0}, "capacity_max"),
    ({"objective.name": "factor_vae"}, "objective.name"),
])
def test_bad_baseline_settings_fail_before_work(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    run_lib.train_run(small_config(**overrides), str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_mixed_discriminator_population_is_refused(tmp_path):
  members = [members_lib.Member("a", {"objective.name": "factorvae"}),
             members_lib.Member("b", {"objective.name": "betatc"})]
  with pytest.raises(ValueError, match="two populations"):
    population.train_population(small_config(), members, tmp_path)
