"""Sweeps: β-TCVAE against β-VAE and the field's baselines, every metric
against each method's hyperparameter on procedural dSprites (the paper's
Fig. 4, and disentanglement_lib's comparison), as one command:

  .venv/bin/python -m betatc_jax.sweep --config configs/sweep_cpu_beta.py
  .venv/bin/python -m betatc_jax.sweep --config.steps=500 --config.root=workdirs/sweep

A sweep config (``grid.get_config``: methods, each one's grid, seeds,
milestones, and ``base``, the training config every run shares) names a
grid of runs; each run is a member of a population (``betatc_jax.population``)
trained to every milestone and evaluated there (``running``); ``report``
writes the CSVs, tables and figures into ``out``.

Resumable: each population's workdir holds one checkpoint for all its runs,
and each run is an ordinary single-run workdir
``<root>/members/<method>_<param><value>_seed<s>`` (its metrics, its
checkpoint at ``steps`` and ``evals/step_<N>.json``). A rerun skips what is
done and continues what is not, so a sweep can grow over several sittings
(a larger ``steps`` continues each population). ``report_only`` rewrites the
outputs. A different grid needs a different root. Ctrl-C saves the
population in training and exits 130; rerun to resume.

Several processes or hosts: the same command on each, with
``--config.base.distributed.coordinator_address=HOST:PORT``,
``num_processes`` and ``process_id`` (docs/populations.md). Each process
evaluates the runs it holds; process 0 writes the report.
"""
