"""An alias of ``python -m betatc_jax.sweep`` (the same flags):

  .venv/bin/python scripts/sweep.py --config configs/sweep_cpu_beta.py
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from betatc_jax.sweep.__main__ import run  # noqa: E402

if __name__ == "__main__":
  run()
