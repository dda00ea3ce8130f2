"""Choosing the seed by UDR (``selection.members``): the candidates, the
record, the picked run equal to its own single run, resume, errors."""

import json

import jax
import numpy as np
import pytest

from betatc_jax import run as run_lib
from betatc_jax import workdir as wd
from betatc_jax import selection
from train_test import checkpoint_steps, read_rows, small_config


def config_with_selection(**overrides):
  return small_config(num_train_steps=8, log_every_steps=2, checkpoint_every_steps=4,
                      learning_rate=3e-4, **{"selection.members": 3, "selection.steps": 4,
                                             "eval.at_end": True, **overrides})


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("selected")
  config = config_with_selection()
  state = run_lib.train_and_evaluate(config, str(workdir))
  return workdir, config, state


def test_the_record_names_every_candidate_and_the_highest_udr(selected):
  workdir, config, _ = selected
  record = json.loads((workdir / selection.SELECTION_FILE).read_text())
  assert [c["seed"] for c in record["candidates"]] == [0, 1000, 2000] == \
      selection.candidate_seeds(config)
  udr = [c["udr"] for c in record["candidates"]]
  assert all(0.0 <= u <= 1.0 for u in udr)
  assert record["picked_seed"] == record["candidates"][int(np.argmax(udr))]["seed"]
  assert record["picked_udr"] == max(udr) and record["steps"] == 4
  assert json.loads((workdir / "eval.json").read_text())["selection"] == record
  assert not (workdir / "selection" / "checkpoints").exists()       # removed once chosen
  assert len(list((workdir / "selection" / "members").iterdir())) == 3


def test_the_picked_run_is_its_seeds_single_run(selected, tmp_path):
  """Candidates train in turn (each its own single-run step), so the run
  after the choice is, bit for bit, ``train.py``'s run of the picked seed:
  parameters at the end and every logged row from step 2."""
  workdir, config, state = selected
  record = selection.load_record(workdir)
  single_config = selection.picked_config(config, record)
  single_config.selection.members = 0
  single = run_lib.train_run(single_config, str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, state.params, single.params)
  rows, want = read_rows(workdir), read_rows(tmp_path)
  assert [r["step"] for r in rows] == [2, 4, 6, 8] == [r["step"] for r in want]
  for a, b in zip(rows, want):
    for key in ("loss", "recon", "kl", "tc"):
      assert a[key] == b[key], (key, a["step"])
  assert checkpoint_steps(workdir) == [4, 8]
  assert json.loads((workdir / "config.json").read_text())["seed"] == record["picked_seed"]


def test_a_rerun_does_not_choose_again(selected, capsys):
  workdir, config, _ = selected
  before = (workdir / selection.SELECTION_FILE).read_text()
  run_lib.train_and_evaluate(config, str(workdir))
  out = capsys.readouterr().out
  assert "selection:" not in out and "is already trained to step 8 of 8" in out
  assert (workdir / selection.SELECTION_FILE).read_text() == before


@pytest.mark.parametrize("overrides,match", [
    ({"selection.members": 1}, r"selection.members must be 0 \(off\) or >= 2"),
    ({"selection.steps": 8}, r"selection.steps must be in \[1, num_train_steps\)"),
])
def test_bad_selection_settings_fail_before_any_work(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    run_lib.train_and_evaluate(config_with_selection(**overrides), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_workdir_of_a_run_without_selection_is_refused(tmp_path):
  run_lib.train_run(small_config(num_train_steps=2), str(tmp_path))
  with pytest.raises(wd.ConfigChangedError, match="selection.members: 0 -> 3"):
    run_lib.train_and_evaluate(config_with_selection(), str(tmp_path))
  assert not (tmp_path / selection.SELECTION_FILE).exists()
