"""Checks of what users pass in: images and shapes, with a clear ValueError.

Imports only jax and numpy, so models and losses can both use it. The
dtype and shape checks are free (trace time). The value-range check runs on
concrete arrays (outside ``jax.jit``); under ``jit`` it is a
``checkify.debug_check``, which compiles to nothing unless you ask for it:

    checked = checkify.checkify(jax.jit(loss_fn), errors=checkify.user_checks)
    error, out = checked(params, x, key)
    error.throw()    # "... images in [0, 1], got a maximum of 255: divide ..."
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def check_images(x: jax.Array, where: str, unit_range: bool = True) -> None:
  """Raises ValueError unless ``x`` is float images (in [0, 1] when
  ``unit_range``).

  Args:
    x: [B, H, W, C] images.
    where: the function they were passed to, for the message.
    unit_range: also check the values: outside jit at once, under jit only
      when the caller is wrapped in ``checkify.checkify`` (module docstring).
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{where} takes float images in [0, 1], got dtype {x.dtype}: convert uint8 "
                     "images with x.astype(jnp.float32) / 255.")
  if not unit_range or x.size == 0:
    return
  if isinstance(x, jax.core.Tracer):
    low, high = jnp.min(x), jnp.max(x)
    checkify.debug_check((low >= 0.0) & (high <= 1.0),
                         f"{where} takes images in [0, 1], got values in [{{}}, {{}}] "
                         "(images in [0, 255] need dividing by 255)", low, high)
    return
  low, high = float(np.min(np.asarray(x))), float(np.max(np.asarray(x)))
  if not (0.0 <= low and high <= 1.0):
    raise ValueError(f"{where} takes images in [0, 1], got values in [{low:g}, {high:g}]"
                     + (": divide images in [0, 255] by 255." if high > 1.0 else "."))


def check_batch_sizes(where: str, **arrays: jax.Array | None) -> None:
  """Raises ValueError unless every array given (None: skipped) has the
  same leading (batch) dimension; free, at trace time."""
  sizes = {name: a.shape[0] if a.ndim else None for name, a in arrays.items() if a is not None}
  if len(set(sizes.values())) > 1:
    listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
    raise ValueError(f"{where}: the batch sizes differ ({listed}); every input needs the same B.")


@contextlib.contextmanager
def shape_errors_as_value_errors() -> Iterator[None]:
  """chex's shape and rank assertions (AssertionError) raised as ValueError."""
  try:
    yield
  except AssertionError as e:
    raise ValueError(str(e)) from None
