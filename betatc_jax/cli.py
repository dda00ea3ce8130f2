"""What the command lines share: one-line errors and their exit codes.

``train.py``, ``python -m betatc_jax.evaluate``, ``python -m
betatc_jax.import_torch`` and the sweep print a user's mistake (a bad flag,
config or file) as one line on stderr, ``error: ...``, and exit 2; a run
that went non-finite exits 1; Ctrl-C or SIGTERM exits 130.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import NoReturn

USAGE_ERROR = 2
NON_FINITE = 1
INTERRUPTED = 130


def one_line(error: BaseException | str) -> str:
  """The message of ``error`` on one line, in the user's terms.

  * An ``OSError`` reads ``<strerror>: <path>`` (Python's own ``args[0]`` is
    the errno, e.g. ``20``), with the second path of a rename or link.
  * A quoted repr (ml_collections' KeyError and AttributeError carry one,
    "Did you mean" included) is unquoted.
  """
  if isinstance(error, OSError) and error.strerror:
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    message = f"{error.strerror}: {' -> '.join(paths)}" if paths else error.strerror
  elif isinstance(error, BaseException):
    message = str(error.args[0]) if len(error.args) == 1 else str(error)
    if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
      try:
        message = str(ast.literal_eval(message))
      except (ValueError, SyntaxError):
        pass
  else:
    message = str(error)
  return " ".join(message.split())


def fail(error: BaseException | str, code: int = USAGE_ERROR) -> NoReturn:
  """Prints ``error: <one_line(error)>`` on stderr and exits with ``code``."""
  print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
  sys.exit(code)


def config_file_error(filename: str | None) -> str:
  """Why a ``--config`` file could not be loaded, in one line."""
  if not filename:
    return "--config needs a config file, e.g. --config configs/default.py"
  if not os.path.isfile(filename):
    return f"config file {filename} does not exist"
  return f"config file {filename} could not be loaded"
