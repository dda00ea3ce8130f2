"""Orbax checkpoints in ``workdir/checkpoints``: the state and its records.

Each step directory holds two items: ``default``, the train state (any
pytree of arrays, ``state.checkpoint_tree``), and ``records``, a JSON object
the loop keeps beside it (which members froze, and the per-step metrics not
yet logged), so that a resumed run finds its state and its records from the
same moment. Orbax decides which steps to save (every N, plus any forced
save) and how many to keep; a checkpoint that cannot be restored is an
error, never a silent fresh start. Checkpoints written before the records
item existed restore with empty records.

``python -m betatc_jax.checkpointing SAVES`` is the one-process writer that
``save_runs`` starts from a run of several processes.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE, RECORDS = "default", "records"


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into this run's state."""


def make_manager(workdir: str | pathlib.Path, keep: int, every: int = 1
                 ) -> ocp.CheckpointManager:
  """A manager over ``workdir/checkpoints`` that saves steps divisible by
  ``every`` (and forced ones) and keeps the ``keep`` latest; every process
  of the run takes part in its saves and restores."""
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  options = ocp.CheckpointManagerOptions(
      create=True,
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(every),
      preservation_policy=ocp.checkpoint_managers.LatestN(keep))
  return ocp.CheckpointManager(directory, options=options, item_handlers={
      STATE: ocp.StandardCheckpointHandler(), RECORDS: ocp.JsonCheckpointHandler()})


def save(manager: ocp.CheckpointManager, step: int, tree: Any,
         records: Mapping[str, Any] | None = None, force: bool = False) -> bool:
  """Saves ``tree`` and ``records`` as step ``step`` (asynchronously) if the
  manager's policy saves that step, or ``force``. Returns whether it saves."""
  return manager.save(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardSave(tree), RECORDS: ocp.args.JsonSave(dict(records or {}))}),
      force=force)


def _flat_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """'a/b/0' -> (shape, dtype) for every leaf; namedtuple fields and dict keys alike."""
  def name(k):
    for attr in ("key", "idx", "name"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  return {"/".join(name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _rename_top(tree: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
  return {names.get(k, k): v for k, v in tree.items()}


def restore_latest(manager: ocp.CheckpointManager, target: Mapping[str, Any],
                   legacy_names: Mapping[str, str] | None = None
                   ) -> tuple[int | None, Any, dict[str, Any]]:
  """Restores the latest checkpoint into the structure, shapes and shardings
  of ``target`` (a dict).

  Args:
    legacy_names: new -> old names of ``target``'s top-level entries that an
      earlier version wrote under the old name; such checkpoints restore too.

  Returns:
    (step, tree, records), or (None, None, {}) when there is no checkpoint.

  Raises:
    CheckpointError: for a corrupt, partial or incompatible checkpoint. It is
      never silently replaced by a fresh initialisation.
  """
  step = manager.latest_step()
  if step is None:
    return None, None, {}
  where = pathlib.Path(str(manager.directory)) / str(step)
  advice = ("Nothing was overwritten. Use another --workdir, or move that step "
            "directory away to resume from an earlier checkpoint.")
  try:
    stored = _flat_shapes(manager.item_metadata(step)[STATE])
  except Exception as e:  # unreadable metadata: corrupt or partial
    raise CheckpointError(f"Cannot restore checkpoint {where}: its metadata is unreadable "
                          f"({type(e).__name__}: {e}). {advice}") from e
  stored_top = {k.split("/")[0] for k in stored}
  old_names = {new: old for new, old in (legacy_names or {}).items()
               if new in target and new not in stored_top and old in stored_top}
  target = _rename_top(target, old_names)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  expected = _flat_shapes(abstract)
  mismatched = [f"{k}: checkpoint {stored.get(k, 'missing')} vs this config {v}"
                for k, v in expected.items() if stored.get(k) != v]
  mismatched += [f"{k}: in the checkpoint only" for k in stored.keys() - expected.keys()]
  if mismatched:
    raise CheckpointError(f"Checkpoint {where} does not match this config (a different "
                          f"model or optimizer?): {'; '.join(sorted(mismatched)[:5])}. {advice}")
  items = {STATE: ocp.args.StandardRestore(abstract)}
  if (where / RECORDS).is_dir():
    items[RECORDS] = ocp.args.JsonRestore()
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # orbax raises many types; all mean "cannot resume"
    raise CheckpointError(f"Cannot restore checkpoint {where} (corrupt or partial): "
                          f"{type(e).__name__}: {e}. {advice}") from e
  tree = _rename_top(restored[STATE], {old: new for new, old in old_names.items()})
  records = dict(restored[RECORDS]) if RECORDS in items and restored[RECORDS] else {}
  return step, tree, records


def read_records(workdir: str | pathlib.Path, step: int | None = None) -> dict[str, Any]:
  """The records of ``workdir``'s checkpoint at ``step`` (None: the latest):
  {} when there is none, or a checkpoint from before records were kept."""
  manager = make_manager(workdir, keep=1)
  try:
    step = manager.latest_step() if step is None else step
    if step is None or not (pathlib.Path(str(manager.directory)) / str(step) / RECORDS).is_dir():
      return {}
    return dict(manager.restore(step, args=ocp.args.Composite(
        **{RECORDS: ocp.args.JsonRestore()}))[RECORDS] or {})
  finally:
    manager.close()


def save_runs(runs: Sequence[tuple[str | pathlib.Path, int, Any]], keep: int) -> None:
  """Writes each ``(workdir, step, tree)`` as an ordinary one-run checkpoint
  ``workdir/checkpoints/<step>`` (keeping ``keep``; a step already there is
  kept as it is), and returns when they are on disk.

  ``tree`` is a pytree of host (numpy) arrays. In a run of several processes
  Orbax saves only with every process taking part and refuses arrays that one
  process holds, so there each process writes its own runs through a
  one-process child, ``python -m betatc_jax.checkpointing``, on the CPU.

  Raises:
    CheckpointError: the child failed (its error output is quoted).
  """
  if jax.process_count() == 1:
    _save_each(runs, keep)
    return
  with tempfile.TemporaryDirectory(prefix="betatc_jax_save_") as tmp:
    saves = pathlib.Path(tmp) / "runs.pkl"
    saves.write_bytes(pickle.dumps(([(str(w), int(s), t) for w, s, t in runs], keep)))
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, "-m", "betatc_jax.checkpointing", str(saves)],
                          env=env, capture_output=True, text=True, check=False)
  if done.returncode:
    raise CheckpointError(f"Writing the checkpoints of {[str(w) for w, _, _ in runs]} failed "
                          f"(exit {done.returncode}):\n{done.stderr[-3000:]}")


def _save_each(runs: Sequence[tuple[str | pathlib.Path, int, Any]], keep: int) -> None:
  for workdir, step, tree in runs:
    manager = make_manager(workdir, keep)
    if manager.latest_step() != step:
      save(manager, step, tree, force=True)
    manager.wait_until_finished()
    manager.close()


if __name__ == "__main__":  # the one-process writer of save_runs
  _save_each(*pickle.loads(pathlib.Path(sys.argv[1]).read_bytes()))
