"""What the command lines share: absl flags with ml_collections config
files, one-line errors and their exit codes.

``train.py``, ``python -m betatc_jax.sweep``, ``python -m
betatc_jax.evaluate`` and ``python -m betatc_jax.import_torch`` take absl
flags (``--config FILE --config.a.b=v`` where there is a config) and print a
user's mistake (a bad flag, config or file) as one line on stderr,
``error: ...``, and exit 2; a run that went non-finite exits 1; Ctrl-C or
SIGTERM saves and exits 130.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

USAGE_ERROR = 2
NON_FINITE = 1
INTERRUPTED = 130


def comma_names(text: str) -> list[str]:
  """The comma-separated names of a flag's value, blanks dropped."""
  return [m.strip() for m in text.split(",") if m.strip()]


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


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, its errors (and config-override errors such as a
  misspelt key) as one line and exit 2; ``app.run``'s ``flags_parser``."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    fail(e)


def config_flag(name: str = "config") -> Any:
  """The ConfigDict of the config-file flag ``name``; a file that did not
  load exits 2 with one line."""
  import ml_collections
  from absl import flags
  from ml_collections import config_flags
  config = getattr(flags.FLAGS, name)   # a stand-in that raises on use if the file failed
  if not isinstance(config, ml_collections.ConfigDict):
    fail(config_file_error(config_flags.get_config_filename(flags.FLAGS[name])))
  return config


def run_command(action: Callable[[], Any], interrupted: type[BaseException],
                non_finite: type[BaseException], usage: tuple[type[BaseException], ...]) -> Any:
  """``action()``, its errors as exit codes: ``interrupted`` prints its
  message and exits 130, ``non_finite`` exits 1, ``usage`` (and OSError)
  exit 2, each with one line."""
  try:
    return action()
  except interrupted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED)
  except (OSError, *usage) as e:
    fail(e)
  except non_finite as e:
    fail(e, code=NON_FINITE)


def quiet_logs() -> None:
  """absl's WARNING level unless --verbosity was given (keeps Orbax's INFO
  lines out of the progress bars)."""
  from absl import flags, logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
