"""Shared test setup.

* tests/ and the repo root on sys.path (for torch_reference and configs);
* one dSprites cache directory for the whole session (subprocesses too), so
  each sub-grid is rendered once; it never touches the user's cache;
* one JAX compilation cache for the whole session (subprocesses too): the
  same train step, evaluation or model, compiled by many tests, is compiled
  once. Set JAX_COMPILATION_CACHE_DIR yourself to keep one between sessions;
* the temporary folders made here are removed when the session ends, and
  what pytest keeps of a failed test's folders (its logs, configs and JSON)
  loses every file over 1 MB (checkpoints, datasets), so a failure never
  leaves gigabytes behind (``PRUNED.txt`` lists what went);
* the files that take longest run first, so the two workers (pyproject's
  addopts) finish together;
* after each test, JAX's in-memory caches (compiled programs, traces) and
  the allocator's free pages are released, so a worker's memory is that of
  the test it runs, not of every test before it (a program needed again
  comes back from the compilation cache on disk).
"""

import ctypes
import ctypes.util
import gc
import os
import shutil
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

_MADE_HERE: list[str] = []


def _session_folder(variable: str, prefix: str) -> None:
  """$variable, else a new temporary folder that the session end removes."""
  if not os.environ.get(variable):
    os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
    _MADE_HERE.append(os.environ[variable])


_session_folder("BETATC_JAX_CACHE", "betatc_jax_test_cache_")
_session_folder("JAX_COMPILATION_CACHE_DIR", "betatc_jax_test_compilation_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if "jax" in sys.modules:  # a plugin imported jax before this file: configure it directly
  import jax

  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


# Measured on 2 CPU cores, longest first; unlisted files run after these.
LONGEST_FIRST = ("sweep_test.py", "population_test.py", "population_processes_test.py",
                 "gpu_script_test.py",
                 "seed_parity_test.py", "test_models.py", "baselines_train_test.py",
                 "train_test.py", "official_parity_test.py", "evaluate_test.py",
                 "import_torch_test.py", "test_estimators.py", "test_images.py")


def pytest_collection_modifyitems(session, config, items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable within a file


KEEP_BYTES = 2**20


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
  for folder in _MADE_HERE:
    shutil.rmtree(folder, ignore_errors=True)
  factory = getattr(session.config, "_tmp_path_factory", None)
  if factory is not None and getattr(factory, "_basetemp", None) is not None:
    prune_large_files(factory.getbasetemp())


def prune_large_files(folder) -> None:
  """Deletes every file over ``KEEP_BYTES`` under ``folder``, listing them in
  ``folder/PRUNED.txt``."""
  removed = []
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      try:
        size = os.lstat(path).st_size
        if size > KEEP_BYTES:
          os.unlink(path)
          removed.append(f"{size:>12} {path}")
      except OSError:
        pass
  if removed:
    with open(os.path.join(folder, "PRUNED.txt"), "a") as f:
      f.write("\n".join(removed) + "\n")


_LIBC_NAME = ctypes.util.find_library("c")   # looked up once: it runs ldconfig
_MALLOC_TRIM = getattr(ctypes.CDLL(_LIBC_NAME), "malloc_trim", None) if _LIBC_NAME else None


def _release_memory() -> None:
  import jax

  jax.clear_caches()
  gc.collect()
  if _MALLOC_TRIM is not None:   # glibc: give free pages back
    _MALLOC_TRIM(0)


@pytest.fixture(autouse=True)
def _release_memory_after_the_test():
  yield
  _release_memory()


def pytest_runtest_teardown(item, nextitem):
  """With $BETATC_RSS_LOG set, appends each test's peak RSS so far (MB) to
  that file: which test raises a worker's memory (the README's figure)."""
  path = os.environ.get("BETATC_RSS_LOG")
  if path:
    import resource
    with open(path, "a") as f:
      f.write(f"{os.getpid()} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} "
              f"{item.nodeid}\n")
