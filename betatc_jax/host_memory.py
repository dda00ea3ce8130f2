"""Keep freed host memory for reuse (glibc), so CPU steps do not page-fault.

With glibc's default malloc, a buffer above the mmap threshold (at most
32 MB) is a fresh mapping that is unmapped again when freed, and a thread
other than the main one allocates from a heap that is trimmed on free. So
every step of a CPU training loop faults its whole working set in again:
XLA's temporary buffer for the seed_conv step at B = 64 is 205 MB, 50,000
page faults and ~180 ms of kernel time per step on the 2-core VM of
``benchmarks/RESULTS.md`` (PyTorch's per-op buffers fault the same way).

``retain_freed_memory()`` sets three malloc parameters: one arena for all
threads (``M_ARENA_MAX`` = 1), no mmap below 1 GiB (``M_MMAP_THRESHOLD``) and
no trimming below 2 GiB (``M_TRIM_THRESHOLD``). Freed buffers then stay in
the heap and the next step reuses pages that are already mapped. The price:
the process keeps its peak resident memory. It changes nothing numerically.

Call it before JAX's first computation (its thread pools pick their malloc
arenas when they start); ``train.py``, ``python -m betatc_jax.evaluate``,
``scripts/sweep.py`` and the throughput benchmark do.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1))


def retain_freed_memory() -> bool:
  """Makes glibc's malloc keep freed memory for reuse (module docstring).

  Returns:
    True if the settings were applied; False where there is no glibc
    (macOS, Windows, musl), where nothing is changed.
  """
  if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in _SETTINGS)
