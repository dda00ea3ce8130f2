"""Orbax checkpoints in ``workdir/checkpoints``: save every N steps, keep K,
restore the latest, and fail loudly on a checkpoint that cannot be restored."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into this run's state."""


def make_manager(workdir: str | pathlib.Path, keep: int, process: int | None = None
                 ) -> ocp.CheckpointManager:
  """A manager over ``workdir/checkpoints`` that keeps the ``keep`` latest.

  Args:
    process: None: every process takes part (a global state). A process
      index: that process alone writes and reads it (host arrays of one run,
      in a run of several processes).
  """
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  alone = {} if process is None else {"multiprocessing_options": ocp.options.MultiprocessingOptions(
      primary_host=process, active_processes={process},
      barrier_sync_key_prefix=f"{directory}")}
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, **alone)
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
