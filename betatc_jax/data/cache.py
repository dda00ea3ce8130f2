"""Checksummed, atomically written cache files for decoded datasets.

A file is MAGIC, an 8-byte header length, a JSON header (with the payload's
sha256) and the raw uint8 payload. Writers go through a temporary file and
``os.replace``, so a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np


def cache_dir() -> pathlib.Path:
  """$BETATC_JAX_CACHE, else $XDG_CACHE_HOME/betatc_jax, else ~/.cache/betatc_jax."""
  if os.environ.get("BETATC_JAX_CACHE"):
    return pathlib.Path(os.environ["BETATC_JAX_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "betatc_jax"


def write_checked(path: pathlib.Path, magic: bytes, header: dict[str, Any],
                  payload: np.ndarray) -> None:
  """Writes ``header`` (plus the payload's sha256) and the uint8 ``payload``
  atomically to ``path``."""
  payload = np.ascontiguousarray(payload, np.uint8).reshape(-1)
  header = json.dumps({**header, "sha256": hashlib.sha256(payload).hexdigest()}).encode()
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(magic + len(header).to_bytes(8, "little") + header)
      f.write(payload.data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: readers see the old file or the new one
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def read_checked(path: pathlib.Path, magic: bytes) -> tuple[dict[str, Any], np.ndarray]:
  """(header, uint8 payload) of a file written by ``write_checked``.

  Raises:
    ValueError: a wrong magic, a truncated file or a checksum mismatch.
  """
  with open(path, "rb") as f:
    if f.read(len(magic)) != magic:
      raise ValueError("bad magic")
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    payload = np.fromfile(f, np.uint8)
  if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
    raise ValueError("checksum mismatch")
  return header, payload
