"""Orbax checkpoints in ``workdir/checkpoints``: save every N steps, keep K,
restore the latest, and fail loudly on a checkpoint that cannot be restored.

``python -m betatc_jax.checkpointing SAVES`` is the one-process writer that
``save_runs`` starts from a run of several processes."""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into this run's state."""


def make_manager(workdir: str | pathlib.Path, keep: int) -> ocp.CheckpointManager:
  """A manager over ``workdir/checkpoints`` that keeps the ``keep`` latest
  (every process of the run takes part in its saves and restores)."""
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def _flat_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """'a/b/0' -> (shape, dtype) for every leaf; namedtuple fields and dict keys alike."""
  def name(k):
    for attr in ("key", "idx", "name"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  return {"/".join(name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def save(manager: ocp.CheckpointManager, step: int, tree: Any) -> None:
  """Saves ``tree`` (any pytree of arrays) as step ``step`` (asynchronously)."""
  manager.save(step, args=ocp.args.StandardSave(tree), force=True)


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
      save(manager, step, tree)
    manager.wait_until_finished()
    manager.close()


def restore_latest(manager: ocp.CheckpointManager, target: Any) -> tuple[int | None, Any]:
  """Restores the latest checkpoint into the structure, shapes and shardings
  of ``target``.

  Returns:
    (step, tree), or (None, None) when there is no checkpoint.

  Raises:
    CheckpointError: for a corrupt, partial or incompatible checkpoint. It is
      never silently replaced by a fresh initialisation.
  """
  step = manager.latest_step()
  if step is None:
    return None, None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  where = pathlib.Path(str(manager.directory)) / str(step)
  advice = ("Nothing was overwritten. Use another --workdir, or move that step "
            "directory away to resume from an earlier checkpoint.")
  try:
    stored = _flat_shapes(manager.item_metadata(step))
  except Exception as e:  # unreadable metadata: corrupt or partial
    raise CheckpointError(f"Cannot restore checkpoint {where}: its metadata is unreadable "
                          f"({type(e).__name__}: {e}). {advice}") from e
  expected = _flat_shapes(abstract)
  mismatched = [f"{k}: checkpoint {stored.get(k, 'missing')} vs this config {v}"
                for k, v in expected.items() if stored.get(k) != v]
  mismatched += [f"{k}: in the checkpoint only" for k in stored.keys() - expected.keys()]
  if mismatched:
    raise CheckpointError(f"Checkpoint {where} does not match this config (a different "
                          f"model or optimizer?): {'; '.join(sorted(mismatched)[:5])}. {advice}")
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types; all mean "cannot resume"
    raise CheckpointError(f"Cannot restore checkpoint {where} (corrupt or partial): "
                          f"{type(e).__name__}: {e}. {advice}") from e
  return step, restored


if __name__ == "__main__":  # the one-process writer of save_runs
  _save_each(*pickle.loads(pathlib.Path(sys.argv[1]).read_bytes()))
