"""Child processes for the tests, waited on by their progress, not a clock.

A loaded machine (another test run beside this one, two workers on two
cores) can make a child several times slower than on an idle one, so no
test gives a child a fixed time to finish. A child is given up only when
it *stops making progress*: nothing new on its stdout or stderr and no file
changed under the folders it writes, for ``STALL_SECONDS`` (default 600 s;
``$BETATC_TEST_STALL_SECONDS`` changes it). Its output goes to files, so a
chatty child never blocks on a full pipe.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence

STALL_SECONDS = float(os.environ.get("BETATC_TEST_STALL_SECONDS", "600"))


class Child:
  """A started process whose stdout and stderr go to temporary files."""

  def __init__(self, command: Sequence[str], *, watch: Iterable[str | os.PathLike] = (),
               **popen_kwargs):
    self._out = tempfile.TemporaryFile("w+")
    self._err = tempfile.TemporaryFile("w+")
    self.command = list(map(str, command))
    self.watch = [pathlib.Path(p) for p in watch]
    self.process = subprocess.Popen(self.command, stdout=self._out, stderr=self._err, text=True,
                                    **popen_kwargs)

  def send_signal(self, sig: int) -> None:
    self.process.send_signal(sig)

  def poll(self) -> int | None:
    return self.process.poll()

  def output(self) -> tuple[str, str]:
    """(stdout, stderr) so far."""
    texts = []
    for f in (self._out, self._err):
      f.flush()
      f.seek(0)
      texts.append(f.read())
    return texts[0], texts[1]

  def signature(self) -> tuple:
    """What changes while the child works: its output's size and the newest
    modification under the folders it writes."""
    sizes = tuple(os.fstat(f.fileno()).st_size for f in (self._out, self._err))
    return sizes + (_newest_change(self.watch),)


def _newest_change(folders: Sequence[pathlib.Path]) -> float:
  newest = 0.0
  for folder in folders:
    if not folder.exists():
      continue
    for root, dirs, files in os.walk(folder):
      for name in dirs + files:
        try:
          newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
        except OSError:        # removed while we looked
          pass
  return newest


def finish(children: Sequence[Child], stall_seconds: float | None = None
           ) -> list[tuple[int, str, str]]:
  """Waits for every child; (returncode, stdout, stderr) of each, in order.

  Raises:
    AssertionError: no child made progress for ``stall_seconds`` (every
      child is killed first; the message holds each one's last output).
  """
  stall_seconds = STALL_SECONDS if stall_seconds is None else stall_seconds
  last = [c.signature() for c in children]
  last_change = time.monotonic()
  while any(c.poll() is None for c in children):
    time.sleep(0.5)
    now = [c.signature() for c in children]
    if now != last:
      last, last_change = now, time.monotonic()
    elif time.monotonic() - last_change > stall_seconds:
      for c in children:
        if c.poll() is None:
          c.process.kill()
      for c in children:
        c.process.wait()
      tails = "\n\n".join(f"$ {' '.join(c.command)[:200]}\n{c.output()[1][-2000:]}"
                          for c in children)
      raise AssertionError(f"no progress for {stall_seconds:.0f} s; killed. Their stderr:\n"
                           f"{tails}")
  return [(c.process.returncode, *c.output()) for c in children]


def run(command: Sequence[str], *, watch: Iterable[str | os.PathLike] = (),
        stall_seconds: float | None = None, **popen_kwargs) -> subprocess.CompletedProcess:
  """``subprocess.run(command, capture_output=True, text=True)``, waited on by
  progress (``finish``)."""
  child = Child(command, watch=watch, **popen_kwargs)
  (returncode, out, err), = finish([child], stall_seconds)
  return subprocess.CompletedProcess(child.command, returncode, out, err)


def wait_until(condition, children: Sequence[Child], what: str,
               stall_seconds: float | None = None) -> None:
  """Polls ``condition()`` until true, as long as the children make
  progress and none has exited.

  Raises:
    AssertionError: a child exited first, or none made progress for
      ``stall_seconds``.
  """
  stall_seconds = STALL_SECONDS if stall_seconds is None else stall_seconds
  last, last_change = [c.signature() for c in children], time.monotonic()
  while not condition():
    for c in children:
      assert c.poll() is None, f"exited ({c.poll()}) before {what}: {c.output()[1][-3000:]}"
    now = [c.signature() for c in children]
    if now != last:
      last, last_change = now, time.monotonic()
    assert time.monotonic() - last_change < stall_seconds, \
        f"no progress for {stall_seconds:.0f} s waiting for {what}"
    time.sleep(0.5)
