"""The files of a workdir.

A single run's workdir W:

  W/config.json           the config the run used
  W/metrics.jsonl, W/tb/  its logged rows (and TensorBoard events)
  W/checkpoints/<step>/   its checkpoints (``checkpointing``)
  W/*.png, W/eval.json    its pictures and evaluation

A population's workdir W:

  W/population.json       the base config and the members
  W/checkpoints/<step>/   one checkpoint of every member, stacked
  W/members/<name>/       an ordinary single-run workdir per member:
      config.json, metrics.jsonl, tb/, frozen.json (if it froze) and, once
      exported, checkpoints/, so every tool that reads a run reads a member.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from betatc_jax import config as config_lib
from betatc_jax.members import Member

FROZEN_FILE = "frozen.json"


class ConfigChangedError(ValueError):
  """The workdir holds a run of another config."""


def member_dir(workdir: str | pathlib.Path, name: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "members" / name


def latest_step(workdir: str | pathlib.Path) -> int:
  """The step of the newest checkpoint in ``workdir``; 0 if none."""
  directory = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
  return max(steps, default=0)


def check_config(workdir: pathlib.Path, config: ml_collections.ConfigDict,
                 allow_config_change: bool) -> dict[str, list[Any]]:
  """The changes from ``workdir/config.json`` to ``config``
  (``config.config_changes``).

  Raises:
    ConfigChangedError: when there are changes and ``allow_config_change``
      is False; the message lists them.
  """
  path = workdir / "config.json"
  if not path.is_file():
    return {}
  changes = config_lib.config_changes(json.loads(path.read_text()), config)
  if changes and not allow_config_change:
    listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    raise ConfigChangedError(
        f"{workdir} holds a run of another config ({listed}). Use a new workdir, or pass "
        "--allow_config_change to continue this run with the changes.")
  return changes


def truncate_metrics(path: pathlib.Path, last_step: int) -> None:
  """Drops rows logged after ``last_step`` (from a run that died after its
  last checkpoint), so the resumed run's rows are not duplicated."""
  if not path.exists():
    return
  rows = [line for line in path.read_text().splitlines()
          if line.strip() and json.loads(line)["step"] <= last_step]
  path.write_text("".join(row + "\n" for row in rows))


def population_record(base: ml_collections.ConfigDict, members: Sequence[Member]) -> dict:
  return {"base": json.loads(base.to_json()),
          "members": [{"name": m.name, "overrides": dict(m.overrides)} for m in members]}


def check_population(workdir: pathlib.Path, record: Mapping[str, Any]) -> None:
  """Raises ValueError when ``workdir`` holds a population of other members."""
  path = workdir / "population.json"
  if path.is_file() and json.loads(path.read_text())["members"] != record["members"]:
    raise ValueError(f"{workdir} holds another population (different members); use a new "
                     "workdir.")


def load_population(workdir: str | pathlib.Path
                    ) -> tuple[ml_collections.ConfigDict, list[Member]]:
  """The base config and members a population workdir was trained with.

  Raises:
    FileNotFoundError: no population.json in ``workdir``.
  """
  path = pathlib.Path(workdir) / "population.json"
  if not path.is_file():
    raise FileNotFoundError(f"{workdir} has no population.json: is it a population workdir?")
  record = json.loads(path.read_text())
  base = config_lib.with_defaults(ml_collections.ConfigDict(record["base"]))
  return base, [Member(m["name"], m["overrides"]) for m in record["members"]]


def frozen_members(workdir: str | pathlib.Path) -> dict[str, dict[str, Any]]:
  """name -> its ``frozen.json`` record (``diverged_at_step``, ``kept_step``,
  loss, grad_norm) for every member of a population that ``"freeze"`` froze
  (a copy of the checkpoint's records, kept in step with them)."""
  directory = pathlib.Path(workdir) / "members"
  paths = sorted(directory.glob(f"*/{FROZEN_FILE}")) if directory.is_dir() else []
  return {p.parent.name: json.loads(p.read_text()) for p in paths}


def write_frozen(directories: Mapping[str, pathlib.Path],
                 frozen: Mapping[str, Mapping[str, Any]]) -> None:
  """Each member's ``frozen.json`` as ``frozen`` says: written for the frozen,
  removed for the others."""
  for name, directory in directories.items():
    path = directory / FROZEN_FILE
    if name in frozen:
      path.write_text(json.dumps(frozen[name]))
    else:
      path.unlink(missing_ok=True)
