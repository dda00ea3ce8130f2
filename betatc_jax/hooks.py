"""What the training loop does between intervals, one small hook each.

The loop (``betatc_jax.loop``) dispatches the steps of an interval, brings
their metrics to the host, and hands them to the hooks in order:

* ``NonFinite``: "stop" finds the first non-finite step and stops the run
  with an error; "freeze" records each member that froze (its step keeps
  its last finite state) and cuts its rows there.
* ``Metrics``: each member's row is the mean of every step since its last
  row, written every ``log_every_steps`` (and when it freezes);
* ``Progress``: the bar;
* ``Deadline``: asks the loop to stop when the next interval would end past
  the deadline;
* ``Interrupt``: SIGINT or SIGTERM asks the loop to stop at the next step;
* ``Checkpoints``: saves the state with the records (frozen members, rows
  not yet logged) whenever Orbax's policy says so, and at the end.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from betatc_jax import checkpointing
from betatc_jax.logging_utils import MetricWriter, ProgressBar


@dataclasses.dataclass
class Interval:
  """The steps an interval dispatched, on the host.

  Attributes:
    first: the updates done before it.
    rows: per step, each metric [K_here] (this process's members).
    seconds: its wall time.
    kept: per member, how many of its rows count (fewer for a member that
      froze in it).
  """
  first: int
  rows: list[dict[str, np.ndarray]]
  seconds: float
  kept: list[int] = dataclasses.field(default_factory=list)

  @property
  def last(self) -> int:
    return self.first + len(self.rows)

  def member_rows(self, k: int) -> list[dict[str, np.float32]]:
    """Member k's rows of this interval, up to where it froze (float32, as
    the step computed them)."""
    return [{name: np.float32(value[k]) for name, value in row.items()}
            for row in self.rows[:self.kept[k]]]


@dataclasses.dataclass
class Run:
  """A training in progress, as the hooks see it.

  Attributes:
    names, dirs: this process's members and where each one's files go.
    members: the global index of each of them.
    total: the step to train to; ``step``: the updates done.
    live: bool [K_here], the members still training.
    frozen: name -> its freeze record (``NonFinite``).
    last_saved: the step of the last checkpoint (None: none yet).
    error: (global member, step, message) of a non-finite stop.
    late, interrupted: a hook asks the loop to stop.
  """
  names: list[str]
  dirs: list[pathlib.Path]
  members: list[int]
  total: int
  step: int
  batch_size: int
  live: np.ndarray
  frozen: dict[str, dict[str, Any]]
  last_saved: int | None
  error: tuple[int, int, str] | None = None
  late: bool = False
  interrupted: bool = False


def non_finite_message(row: dict[str, Any], step: int, last_saved: int | None, where: Any,
                       who: str = "") -> str:
  return (f"Non-finite loss or gradients{who} at step {step} (loss={row['loss']}, "
          f"grad_norm={row['grad_norm']}). Training stopped; the last good checkpoint is "
          f"step {last_saved} in {where}.")


class NonFinite:
  """``policy`` "stop" (a run's error) or "freeze" (the member keeps its
  last finite state, the others train on)."""

  def __init__(self, policy: str, checkpoint_dir: Any, single: bool):
    self.policy, self._where, self._single = policy, checkpoint_dir, single

  def interval(self, run: Run, interval: Interval) -> None:
    key = "live" if self.policy == "freeze" else "finite"
    for k, name in enumerate(run.names):
      if not run.live[k]:
        interval.kept[k] = 0
        continue
      flags = [row[key][k] for row in interval.rows]
      bad = next((j for j, flag in enumerate(flags) if flag < 1.0), None)
      if bad is None:
        continue
      step = interval.first + bad + 1
      row = {n: float(v[k]) for n, v in interval.rows[bad].items()}
      if self.policy == "stop":
        who = "" if self._single else f" of member {name!r}"
        run.error = (run.members[k], step, non_finite_message(row, step, run.last_saved,
                                                              self._where, who))
        return
      run.live[k], interval.kept[k] = False, bad
      run.frozen[name] = {"diverged_at_step": step, "kept_step": step - 1, "loss": row["loss"],
                          "grad_norm": row["grad_norm"]}
      (run.dirs[k] / "frozen.json").write_text(json.dumps(run.frozen[name]))
      print(f"member {name!r}: non-finite at step {step} (loss={row['loss']}, grad_norm="
            f"{row['grad_norm']}); frozen at its state of step {step - 1}", flush=True)


class Metrics:
  """Each member's rows: the mean of every step since its previous row."""

  def __init__(self, run: Run, log_every: int, unlogged: dict[str, list[dict[str, float]]],
               population_size: int, enabled: bool):
    self._log_every, self._population = log_every, population_size
    self._writers = [MetricWriter(d, enabled=enabled) for d in run.dirs]
    self.unlogged = [[{n: np.float32(v) for n, v in row.items()} for row in unlogged.get(name, [])]
                     for name in run.names]
    self._timed = [0] * len(run.names)
    self._seconds = [0.0] * len(run.names)

  def interval(self, run: Run, interval: Interval) -> None:
    at_row = interval.last % self._log_every == 0 or interval.last == run.total
    for k in range(len(run.names)):
      rows = interval.member_rows(k)
      self.unlogged[k] += rows
      self._timed[k] += len(interval.rows)
      self._seconds[k] += interval.seconds
      froze = interval.kept[k] < len(interval.rows)
      if self.unlogged[k] and (at_row or froze):
        self._write(k, interval.first + len(rows), run.batch_size)

  def _write(self, k: int, step: int, batch_size: int) -> None:
    row = {name: float(np.mean([r[name] for r in self.unlogged[k]]))
           for name in self.unlogged[k][0] if name not in ("finite",)}
    rate = self._timed[k] / max(self._seconds[k], 1e-9)
    row.update(step=step, steps_per_sec=rate, images_per_sec=rate * batch_size)
    if self._population > 1:
      row["population_images_per_sec"] = rate * batch_size * self._population
    self._writers[k].write(row)
    self.unlogged[k], self._timed[k], self._seconds[k] = [], 0, 0.0

  def records(self, run: Run) -> dict[str, list[dict[str, float]]]:
    """The rows not yet logged, by member: kept with a checkpoint."""
    return {name: [{n: float(v) for n, v in row.items()} for row in rows]
            for name, rows in zip(run.names, self.unlogged) if rows}

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


class Progress:
  """The bar: it moves at least once a second and shows each logged row."""

  def __init__(self, start: int, total: int, enabled: bool, desc: str | None,
               tc_label: str = "tc"):
    self.bar = ProgressBar(start, total, enabled=enabled, tc_label=tc_label, desc=desc)

  def tick(self, metrics: dict[str, Any], step: int) -> None:
    if self.bar.due():
      import jax
      jax.block_until_ready(metrics["loss"])
      self.bar.move_to(step)

  def interval(self, run: Run, interval: Interval) -> None:
    k = int(np.argmax(run.live)) if run.live.any() else 0
    rows = interval.member_rows(k)
    if rows:        # the interval's mean, of the first member still training
      self.bar.show(interval.last, {n: float(np.mean([r[n] for r in rows])) for n in rows[0]})
    else:
      self.bar.move_to(interval.last)

  def close(self) -> None:
    self.bar.close()


class Deadline:
  """Stops the loop at the boundary after which the next interval (timed
  as the last one) would end past ``deadline`` (a ``time.time()``)."""

  def __init__(self, deadline: float | None):
    self.deadline = deadline

  def interval(self, run: Run, interval: Interval, following: int) -> None:
    if self.deadline is None or not following or not interval.rows:
      return
    ends = time.time() + interval.seconds / len(interval.rows) * following
    if ends > self.deadline:
      run.late = True
      print(f"deadline: stopping at step {interval.last} of {run.total} (the next {following} "
            f"steps would end {ends - self.deadline:.0f} s past it)", flush=True)


class Interrupt:
  """SIGINT/SIGTERM set ``raised`` while installed (main thread only); the
  loop stops at the next step, saves and raises ``TrainingInterrupted``."""

  def __init__(self):
    self.raised = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    self.raised = True

  def close(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class Checkpoints:
  """Saves the state and the records when Orbax's policy (every
  ``checkpoint_every_steps``) says so, and whenever the loop ends; None
  ``manager``: never."""

  def __init__(self, manager: Any, tree_of, enabled: bool):
    self.manager, self._tree_of, self._enabled = manager, tree_of, enabled

  def save(self, run: Run, metrics: Metrics, force: bool) -> None:
    if not self._enabled:
      return
    records = {"frozen": run.frozen, "unlogged": metrics.records(run)}
    if checkpointing.save(self.manager, run.step, self._tree_of(), records, force=force):
      run.last_saved = run.step

  def close(self) -> None:
    self.manager.wait_until_finished()


def boundaries(start: int, total: int, every: Sequence[int]) -> list[int]:
  """The steps after ``start`` up to ``total`` at which an interval ends:
  multiples of any of ``every``, and ``total``."""
  return sorted({s for s in range(start + 1, total + 1) if any(s % n == 0 for n in every)}
                | {total})
