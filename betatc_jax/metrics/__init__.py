"""Disentanglement metrics and the dataset-level ELBO decomposition."""

from betatc_jax.metrics.elbo import elbo_decomposition
from betatc_jax.metrics.mig import discrete_mutual_info, mig, mig_from_samples, mig_histogram

__all__ = ["elbo_decomposition", "mig", "mig_from_samples", "mig_histogram",
           "discrete_mutual_info"]
