"""Checks of what users pass in: images and shapes, with a clear ValueError.

Imports only jax and numpy, so models and losses can both use it. The
dtype and shape checks are free (trace time); the value-range check runs
only on concrete arrays (outside ``jax.jit``), never on a traced step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np


def check_images(x: jax.Array, where: str, unit_range: bool = True) -> None:
  """Raises ValueError unless ``x`` is float images (in [0, 1] when
  ``unit_range``).

  Args:
    x: [B, H, W, C] images.
    where: the function they were passed to, for the message.
    unit_range: also check the values (outside jit only).
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{where} takes float images in [0, 1], got dtype {x.dtype}: convert uint8 "
                     "images with x.astype(jnp.float32) / 255.")
  if not unit_range or isinstance(x, jax.core.Tracer) or x.size == 0:
    return
  low, high = float(np.min(np.asarray(x))), float(np.max(np.asarray(x)))
  if not (0.0 <= low and high <= 1.0):
    raise ValueError(f"{where} takes images in [0, 1], got values in [{low:g}, {high:g}]"
                     + (": divide images in [0, 255] by 255." if high > 1.0 else "."))


@contextlib.contextmanager
def shape_errors_as_value_errors() -> Iterator[None]:
  """chex's shape and rank assertions (AssertionError) raised as ValueError."""
  try:
    yield
  except AssertionError as e:
    raise ValueError(str(e)) from None
