"""Populations: every member is exactly its single run; resume, host data,
devices, export to single-run workdirs, evaluation, errors."""

import json
import os
import pathlib
import sys
import textwrap

import jax
import numpy as np
import pytest

import children
from betatc_jax import run as run_lib
from betatc_jax import state as state_lib
from betatc_jax import step as step_lib
from betatc_jax import workdir as wd
from betatc_jax import members as members_lib
from betatc_jax import checkpointing, hooks, loop
from betatc_jax.data import dataset_from_config
from betatc_jax import evaluate, population
from train_test import ROOT, checkpoint_steps, read_rows, small_config

LOSS_KEYS = ("loss", "recon", "kl", "mi", "tc", "dim_kl")

# Different objectives, β, estimators, warm-ups, learning rates and seeds
# (two members share a seed, so they share their data order).
MEMBERS = [
    members_lib.Member("tc_mss_b6_s0", {"seed": 0, "objective.beta": 6.0}),
    members_lib.Member("vae_b4_s1", {"seed": 1, "objective.name": "beta_vae",
                                    "objective.beta": 4.0}),
    members_lib.Member("tc_mws_b2_s2", {"seed": 2, "objective.estimator": "mws",
                                       "objective.beta": 2.0, "learning_rate": 1e-4,
                                       "objective.anneal_steps": 10}),
    members_lib.Member("tc_ref_b8_s0", {"seed": 0, "objective.estimator": "reference",
                                       "objective.beta": 8.0, "objective.alpha": 0.5,
                                       "objective.gamma": 2.0}),
]


def base_config(steps):
  return small_config(num_train_steps=steps, log_every_steps=4, checkpoint_every_steps=20,
                      learning_rate=3e-4)


def assert_rows_close(a, b, rtol, keys=LOSS_KEYS, atol=0.0):
  ra, rb = read_rows(a), read_rows(b)
  assert [r["step"] for r in ra] == [r["step"] for r in rb] and ra
  for x, y in zip(ra, rb):
    for key in keys:
      np.testing.assert_allclose(x[key], y[key], rtol=rtol, atol=atol,
                                 err_msg=f"{key} at step {x['step']}")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
  """A population trained to 20 steps, then resumed to 40 in the same workdir."""
  workdir = tmp_path_factory.mktemp("pop")
  population.train_population(base_config(20), MEMBERS, workdir, execution="vmap")
  states, keys = population.train_population(base_config(40), MEMBERS, workdir,
                                             execution="vmap")
  return workdir, states, keys


def test_first_step_is_the_single_runs_step():
  """Same init (bit for bit), batch, noise and objective: one population
  step gives each member the single step's loss terms and Adam moments to
  float rounding (vmapped, XLA:CPU fuses and vectorises differently, so
  1-ulp differences are expected; a wrong batch, key or weight would be
  far off)."""
  base = base_config(1)
  configs = members_lib.validate_population(base, MEMBERS)
  dataset = dataset_from_config(base)
  states, keys = state_lib.create_population_state(configs, dataset.observation_shape,
                                                    len(dataset))
  indices = members_lib.member_batch_indices([c.seed for c in configs], 0, 1, 32, len(dataset))
  batches = np.stack([dataset.images[rows] for rows in indices[0]])
  new, metrics = jax.jit(step_lib.population_step)(states, batches, keys)
  single_step = jax.jit(step_lib.train_step)
  init = jax.jit(state_lib.init_params, static_argnums=(0, 1))
  for k, config in enumerate(configs):
    params, key = init(state_lib.make_model(config, (64, 64, 1)), (64, 64, 1), config.seed)
    jax.tree.map(np.testing.assert_array_equal, params, state_lib.unstack(states.params, k))
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(keys[k]))
    single = state_lib.unstack(states, k)
    assert float(single.weights.tc) == (config.objective.beta
                                        if config.objective.name == "betatc" else 0.0)
    one, m = single_step(single, batches[k], keys[k])
    for key in LOSS_KEYS:
      np.testing.assert_allclose(m[key], metrics[key][k], rtol=1e-6, atol=1e-7, err_msg=key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(a)))),
                 one.opt_state, state_lib.unstack(new.opt_state, k))


def test_every_vmapped_member_equals_its_single_run(resumed, tmp_path):
  """Vmapped, member i logs the single run's losses at every logged step to 1e-3
  relative. Measured: at most 6e-6 over the 40 steps on an AMD EPYC (AVX2),
  1.1e-4 in the β=8 member's KL at step 40 on another CPU: vmapped, XLA
  vectorises differently, and training amplifies the 1-ulp differences. A
  wrong seed, β or estimator is off by percents. At lr 1e-3 and B = 32 the
  β=6 MSS member hits a loss spike that amplifies them up to 25% at one
  logged step, so these runs use lr 3e-4 and 1e-4."""
  workdir, _, _ = resumed
  for member in MEMBERS:
    single = tmp_path / member.name
    run_lib.train_run(members_lib.member_config(base_config(40), member), str(single))
    # mi, tc and dim_kl are differences of close numbers: absolute 1e-3 nats too.
    assert_rows_close(wd.member_dir(workdir, member.name), single, rtol=1e-3,
                      keys=("loss", "recon", "kl"))
    assert_rows_close(wd.member_dir(workdir, member.name), single, rtol=1e-3,
                      keys=("mi", "tc", "dim_kl"), atol=1e-3)


@pytest.mark.parametrize("on_non_finite", ["stop", "freeze"])
def test_members_in_turn_are_their_single_runs_bit_for_bit(tmp_path, on_non_finite):
  """``execution="sequential"`` (the default on a CPU): each member's own
  jitted step in turn, so every logged loss and the final parameters are
  those of ``train.py``'s run of its config, bit for bit (with the freezing
  step too)."""
  base = base_config(12)
  states, _ = population.train_population(base, MEMBERS, tmp_path / "pop",
                                          execution="sequential", on_non_finite=on_non_finite)
  for k, member in enumerate(MEMBERS):
    single = run_lib.train_run(members_lib.member_config(base, member), str(tmp_path / member.name))
    jax.tree.map(np.testing.assert_array_equal, state_lib.unstack(states.params, k),
                 single.params)
    assert_rows_close(wd.member_dir(tmp_path / "pop", member.name),
                      tmp_path / member.name, rtol=0)


def test_a_checkpoint_of_one_execution_resumes_in_the_other(tmp_path):
  """The two modes write the same stacked checkpoint: a vmapped population
  restored in turn holds the same parameters, and trains on."""
  base = base_config(8)
  vmapped, _ = population.train_population(base, MEMBERS[:2], tmp_path, execution="vmap")
  same, _ = population.train_population(base, MEMBERS[:2], tmp_path, execution="sequential")
  jax.tree.map(np.testing.assert_array_equal, vmapped.params, same.params)
  on, _ = population.train_population(base_config(12), MEMBERS[:2], tmp_path,
                                      execution="sequential")
  assert [int(s) for s in on.step] == [12, 12] and checkpoint_steps(tmp_path) == [8, 12]
  with pytest.raises(ValueError, match="execution must be one of"):
    population.train_population(base, MEMBERS[:2], tmp_path, execution="pmap")


def test_resume_20_plus_20_equals_40(resumed, tmp_path):
  workdir, states, _ = resumed
  assert checkpoint_steps(workdir) == [20, 40]
  assert wd.latest_step(workdir) == 40 and wd.latest_step(tmp_path) == 0
  assert np.asarray(states.step).tolist() == [40] * len(MEMBERS)
  straight, _ = population.train_population(base_config(40), MEMBERS, tmp_path,
                                            execution="vmap")
  for member in MEMBERS:
    assert_rows_close(wd.member_dir(workdir, member.name),
                      wd.member_dir(tmp_path, member.name), rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, states.params, straight.params)


def test_host_batches_equal_device_batches(tmp_path):
  members = MEMBERS[:2]
  on_device, _ = population.train_population(base_config(8), members, tmp_path / "device",
                                             execution="vmap")
  on_host, _ = population.train_population(base_config(8), members, tmp_path / "host",
                                           data_on_device=False, execution="vmap")
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), on_device.params,
               on_host.params)


def test_members_export_as_single_run_workdirs(resumed):
  """``export_members`` writes ordinary workdirs: the evaluate command loads
  one and gets what evaluating the population's state gives."""
  workdir, states, keys = resumed
  base = base_config(40)
  paths = population.export_members(workdir, states, keys, MEMBERS)
  assert [p.name for p in paths] == [m.name for m in MEMBERS]
  dataset = dataset_from_config(base)
  chosen = [3]
  direct = population.evaluate_members(base, [MEMBERS[k] for k in chosen],
                                       state_lib.unstack(states, np.asarray(chosen)), dataset)
  for k, want in zip(chosen, direct):
    got = evaluate.evaluate_workdir(paths[k])
    assert got["step"] == want["step"] == 40
    for key in ("mig", "mig_with_shape", "tc", "mi", "log_px", "kl"):
      assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    assert (paths[k] / "eval.json").is_file() and (paths[k] / "traversals.png").is_file()
  # The exported checkpoint resumes as a single run: nothing left to train.
  state = run_lib.train_run(members_lib.member_config(base, MEMBERS[0]), str(paths[0]))
  assert int(state.step) == 40 and checkpoint_steps(paths[0]) == [40]


def test_nan_names_the_member_and_keeps_the_last_good_checkpoint(tmp_path):
  members = [MEMBERS[0], members_lib.Member("diverges", {"seed": 5, "learning_rate": 1e30})]
  base = small_config(num_train_steps=12, log_every_steps=2, checkpoint_every_steps=1)
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"of member 'diverges' at step \d+ .*last good checkpoint is step \d+"):
    population.train_population(base, members, tmp_path)
  rows = read_rows(wd.member_dir(tmp_path, "diverges"))
  assert all(np.isfinite(r["loss"]) for r in rows)


@pytest.mark.parametrize("execution", ["vmap", "sequential"])
def test_freeze_keeps_a_diverged_member_and_leaves_the_others_unchanged(tmp_path, execution):
  """``on_non_finite="freeze"``: a member at lr 1e30 keeps its last finite
  state and is recorded, and the other members' numbers are bit for bit
  those of the same population whose third member trains normally (its row
  of the vmapped step touches no other row; in turn, its step is its own);
  a resumed population keeps it frozen."""
  base = small_config(num_train_steps=12, log_every_steps=2, checkpoint_every_steps=6)
  bad = members_lib.Member("diverges", {"seed": 5, "learning_rate": 1e30})
  good = members_lib.Member("diverges", {"seed": 5})
  frozen, _ = population.train_population(base, [*MEMBERS[:2], bad], tmp_path / "f",
                                          on_non_finite="freeze", execution=execution)
  normal, _ = population.train_population(base, [*MEMBERS[:2], good], tmp_path / "n",
                                          on_non_finite="freeze", execution=execution)
  for k in (0, 1):
    jax.tree.map(np.testing.assert_array_equal, state_lib.unstack(frozen.params, k),
                 state_lib.unstack(normal.params, k))
    name = MEMBERS[k].name
    assert read_rows(wd.member_dir(tmp_path / "f", name)) == [
        dict(r, steps_per_sec=mine["steps_per_sec"], images_per_sec=mine["images_per_sec"],
             population_images_per_sec=mine["population_images_per_sec"])
        for r, mine in zip(read_rows(wd.member_dir(tmp_path / "n", name)),
                           read_rows(wd.member_dir(tmp_path / "f", name)))]
  record = wd.frozen_members(tmp_path / "f")
  assert list(record) == ["diverges"] and wd.frozen_members(tmp_path / "n") == {}
  kept = record["diverges"]["kept_step"]
  assert record["diverges"]["diverged_at_step"] == kept + 1 and 1 <= kept < 12
  assert not np.isfinite(record["diverges"]["loss"] * record["diverges"]["grad_norm"])
  assert [int(s) for s in frozen.step] == [12, 12, kept]
  assert all(np.isfinite(x[2]).all() for x in jax.tree.leaves(frozen.params))
  rows = read_rows(wd.member_dir(tmp_path / "f", "diverges"))
  assert rows and all(np.isfinite(r["loss"]) for r in rows) and rows[-1]["step"] <= kept
  resumed, _ = population.train_population(small_config(
      num_train_steps=16, log_every_steps=2, checkpoint_every_steps=6), [*MEMBERS[:2], bad],
      tmp_path / "f", on_non_finite="freeze", execution=execution)
  assert [int(s) for s in resumed.step] == [16, 16, kept]
  assert wd.frozen_members(tmp_path / "f") == record


def test_a_crash_between_a_freeze_and_its_checkpoint_resumes_consistently(tmp_path,
                                                                          monkeypatch):
  """The freeze record lives in the checkpoint. A run that dies after a
  member froze (step 2) but before the checkpoint that would hold it: on
  disk, frozen.json names the freeze, the latest checkpoint (step 1) does
  not. Resumed, the member trains from the checkpoint's live state, freezes
  again where it did, and its record, its frozen.json and its state agree
  with the population that never crashed, bit for bit."""
  base = small_config(num_train_steps=6, log_every_steps=1, checkpoint_every_steps=1)
  pair = [MEMBERS[0], members_lib.Member("diverges", {"seed": 5, "learning_rate": 1e30})]
  straight, _ = population.train_population(base, pair, tmp_path / "straight",
                                            on_non_finite="freeze")
  real_save = hooks.Checkpoints.save

  def crash_once_frozen(self, run, metrics, force):
    if run.frozen:
      raise RuntimeError("the machine went away")
    real_save(self, run, metrics, force)

  with monkeypatch.context() as patch:
    patch.setattr(hooks.Checkpoints, "save", crash_once_frozen)
    with pytest.raises(RuntimeError, match="went away"):
      population.train_population(base, pair, tmp_path / "crashed", on_non_finite="freeze")
  crashed = tmp_path / "crashed"
  assert list(wd.frozen_members(crashed)) == ["diverges"]          # the file says frozen
  assert checkpoint_steps(crashed) == [1]
  assert checkpointing.read_records(crashed)["frozen"] == {}       # its checkpoint does not
  resumed, _ = population.train_population(base, pair, crashed, on_non_finite="freeze")
  record = checkpointing.read_records(crashed)["frozen"]
  assert record == checkpointing.read_records(tmp_path / "straight")["frozen"]
  assert wd.frozen_members(crashed) == record == wd.frozen_members(tmp_path / "straight")
  assert [int(s) for s in resumed.step] == [6, record["diverges"]["kept_step"]]
  jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)


def test_deadline_stops_at_a_boundary_without_checkpoints(tmp_path):
  """A deadline already past: the loop returns after the first logging
  interval, its true step in the states; save_checkpoints=False writes none."""
  import time
  base = small_config(num_train_steps=12, log_every_steps=2, checkpoint_every_steps=6)
  states, _ = population.train_population(base, MEMBERS[:2], tmp_path, deadline=time.time(),
                                          save_checkpoints=False)
  assert [int(s) for s in states.step] == [2, 2]
  assert [r["step"] for r in read_rows(wd.member_dir(tmp_path, MEMBERS[0].name))] == [2]
  assert wd.latest_step(tmp_path) == 0
  with pytest.raises(ValueError, match="on_non_finite must be one of"):
    population.train_population(base, MEMBERS[:2], tmp_path, on_non_finite="skip")


@pytest.mark.parametrize("members,match", [
    ([], "at least one member"),
    ([members_lib.Member("a", {"batch_size": 8})], "may only set"),
    ([members_lib.Member("a", {}), members_lib.Member("a", {"seed": 1})], "unique"),
    ([members_lib.Member("a/b", {})], "plain directory name"),
    ([members_lib.Member("a", {"objective.beta": -1.0})], "Member 'a': .*beta must be >= 0"),
])
def test_bad_population_fails_before_any_work(tmp_path, members, match):
  with pytest.raises(ValueError, match=match):
    population.train_population(base_config(4), members, tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_another_population_in_the_workdir_is_refused(resumed):
  workdir, _, _ = resumed
  with pytest.raises(ValueError, match="another population"):
    population.train_population(base_config(40), MEMBERS[:2], workdir)


_RUNNER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax
    from betatc_jax import population
    from population_test import MEMBERS, base_config
    states, _ = population.train_population(base_config(8), MEMBERS[:2], sys.argv[1],
                                            member_devices=int(sys.argv[2]), execution="vmap")
    print("DEVICES", jax.device_count(), "SHARDS", len(states.params["encoder"]["fc_0"]["kernel"]
                                                         .addressable_shards))
""")


def test_four_devices_split_members_and_batches(tmp_path):
  """2 members on a 2 × 2 ('member', 'data') mesh of 4 simulated CPU devices
  equal the population on one device."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  code = _RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"))
  procs = {m: children.Child([sys.executable, "-c", code, str(tmp_path / f"m{m}"), str(m)],
                             watch=[tmp_path / f"m{m}"], env=env)
           for m in (2,)}
  population.train_population(base_config(8), MEMBERS[:2], tmp_path / "one", execution="vmap")
  for m, proc in procs.items():
    (returncode, out, err), = children.finish([proc])
    assert returncode == 0, err[-6000:]
    assert "DEVICES 4 SHARDS 4" in out
    for member in MEMBERS[:2]:
      assert_rows_close(wd.member_dir(tmp_path / "one", member.name),
                        wd.member_dir(tmp_path / f"m{m}", member.name), rtol=1e-4,
                        atol=1e-3)
