"""Host-side logging: metrics.jsonl, TensorBoard events (tensorboardX, no
TensorFlow) and a tqdm progress bar."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import tqdm


class MetricWriter:
  """Appends one JSON object per logged step to ``workdir/metrics.jsonl`` and
  writes the same scalars to TensorBoard event files in ``workdir/tb``."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self._enabled = enabled
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter
      self._jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a")
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tb"))

  def write(self, row: dict[str, Any]) -> None:
    """row: {"step": int, name: float, ...}."""
    if not self._enabled:
      return
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for name, value in row.items():
      if name != "step":
        self._tb.add_scalar(f"train/{name}", value, row["step"])
    self._tb.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tb.close()


class ProgressBar:
  """tqdm over the training steps showing the step, steps/s, the
  reconstruction term, the analytic KL and the TC estimate (labelled with a
  biased estimator's name: MWS's TC carries a batch-size-dependent offset of
  up to ~(D−1)·log N at small B, so only its changes are readable).

  The loop moves the bar with ``move_to`` whenever ``due()`` (at most every
  ``interval`` seconds, so it moves during long logging intervals) and sets
  the logged values with ``show`` at each logged row.
  """

  def __init__(self, start: int, total: int, enabled: bool = True, tc_label: str = "tc",
               interval: float = 1.0, desc: str | None = None):
    self._bar = tqdm.tqdm(total=total, initial=start, unit="step", disable=not enabled,
                          dynamic_ncols=True, desc=desc)
    self._enabled, self._interval = enabled, interval
    self._last = time.monotonic()
    self._tc_label = tc_label

  def due(self) -> bool:
    """True when enabled and ``interval`` seconds have passed since the bar last moved."""
    return self._enabled and time.monotonic() - self._last >= self._interval

  def move_to(self, step: int) -> None:
    self._bar.update(step - self._bar.n)
    self._last = time.monotonic()

  def show(self, step: int, row: dict[str, Any]) -> None:
    """Moves to ``step`` and shows the logged ``row``'s values."""
    shown = {"recon": f"{row['recon']:.1f}", "kl": f"{row['kl']:.2f}"} if "recon" in row else {
        "loss": f"{row['loss']:.2f}"}
    if "tc" in row:
      shown[self._tc_label] = f"{row['tc']:.2f}"
    self._bar.set_postfix(shown, refresh=False)
    self.move_to(step)

  def close(self) -> None:
    self._bar.close()


class PhaseBar:
  """A tqdm bar over named phases: ``next()`` ends the current one."""

  def __init__(self, names: list[str], enabled: bool):
    self._names = names
    self._bar = tqdm.tqdm(total=len(names), desc=f"evaluating: {names[0]}", unit="phase",
                          disable=not enabled, dynamic_ncols=True)

  def next(self) -> None:
    self._bar.update(1)
    if self._bar.n < len(self._names):
      self._bar.set_description(f"evaluating: {self._names[self._bar.n]}")

  def close(self) -> None:
    self._bar.update(len(self._names) - self._bar.n)
    self._bar.close()
