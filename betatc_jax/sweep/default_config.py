"""The default sweep (``grid.get_config``), for ``--config``'s default."""

from betatc_jax.sweep.grid import get_config

__all__ = ["get_config"]
