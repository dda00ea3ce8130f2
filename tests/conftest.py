"""Shared test setup.

* tests/ and the repo root on sys.path (for torch_reference and configs);
* one dSprites cache directory for the whole session (subprocesses too), so
  each sub-grid is rendered once; it never touches the user's cache.
"""

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("BETATC_JAX_CACHE", tempfile.mkdtemp(prefix="betatc_jax_test_cache_"))
