"""The sweep's figures, each from the rows of its CSVs (``report``).

``figure`` is the one helper: a Matplotlib figure of n panels, saved and
closed when the block ends.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from betatc_jax.sweep.grid import BETA_METHODS, LABELS, METHODS

COLORS = [f"C{i}" for i in range(10)]
METRIC_TITLES = {"mig": "MIG", "sap_score": "SAP", "modularity": "modularity",
                 "explicitness": "explicitness", "beta_vae_score": "β-VAE score",
                 "factorvae_score": "FactorVAE score", "dci_disentanglement": "DCI dis.",
                 "irs": "IRS", "sap_score_continuous": "SAP (cont.)", "tc": "TC"}


@contextlib.contextmanager
def figure(path: pathlib.Path, panels: int = 1, size: tuple[float, float] = (5, 3.8),
           sharey: bool = False) -> Iterator[list[Any]]:
  """Yields ``panels`` axes side by side (each ``size`` inches); saves the
  figure to ``path`` and closes it at the end of the block."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, panels, figsize=(size[0] * panels, size[1]), sharey=sharey,
                           squeeze=False)
  try:
    yield list(axes[0])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
  finally:
    plt.close(fig)


def mig_vs_beta(path: pathlib.Path, summary, rows: list[dict[str, Any]]) -> None:
  """Left: MIG against β, one line per method (the mean over seeds) and
  every run a dot (nudged sideways by method, so seeds do not hide each
  other). Right: TC against MIG, every run."""
  methods = [m for m in BETA_METHODS if any(k[0] == m for k in summary)]
  with figure(path, 2, (5.5, 4)) as (left, right):
    for i, (color, method) in enumerate(zip(COLORS, methods)):
      keys = sorted(k for k in summary if k[0] == method)
      runs = [r for r in rows if r["method"] == method]
      seeds = ", ".join(map(str, sorted({r["seed"] for r in runs})))
      left.plot([k[1] for k in keys], [summary[k]["mig"][0] for k in keys], "-", color=color,
                label=f"{LABELS[method]} (mean of seeds {seeds})", lw=2)
      nudge = (i - (len(methods) - 1) / 2) * 0.12
      left.plot([r["value"] + nudge for r in runs], [r["mig"] for r in runs], "o", color=color,
                ms=4, alpha=0.7)
      right.plot([r["mig"] for r in runs], [r["tc"] for r in runs], "o", color=color, ms=5,
                 alpha=0.7, label=LABELS[method])
    left.set(xlabel="β", ylabel="MIG (shape excluded)")
    left.set_title("MIG against β: lines the mean, dots each seed", fontsize=10)
    right.set(xlabel="MIG (shape excluded)", ylabel="total correlation (nats, dataset level)")
    right.set_title("TC against MIG, every run", fontsize=10)
    left.legend(fontsize=8)
    right.legend(fontsize=8)


def tc_vs_mig(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
  """TC against MIG, one dot per run of the β methods (colour: method, size: β)."""
  with figure(path) as (ax,):
    for color, method in zip(COLORS, BETA_METHODS):
      runs = [r for r in rows if r["method"] == method]
      if runs:
        ax.scatter([r["mig"] for r in runs], [r["tc"] for r in runs],
                   s=[8 + 4 * r["value"] for r in runs], color=color, alpha=0.7,
                   label=LABELS[method])
    ax.set(xlabel="MIG (shape excluded)", ylabel="total correlation (nats)")
    ax.set_title("every run at the final step (dot size: β)", fontsize=9)
    ax.legend(fontsize=8)


def mig_vs_steps(path: pathlib.Path, curves: list[dict[str, Any]],
                 seconds_per_step: float | None = None) -> None:
  """MIG against training steps, one line per run (colour: the method's
  hyperparameter value, style: seed); with ``seconds_per_step``, a top axis
  in training seconds of one run."""
  methods = [m for m in LABELS if any(r["method"] == m for r in curves)]
  with figure(path, len(methods), (5, 3.6), sharey=True) as axes:
    for ax, method in zip(axes, methods):
      seeds = sorted({r["seed"] for r in curves if r["method"] == method})
      values = sorted({r["value"] for r in curves if r["method"] == method})
      for ci, value in enumerate(values):
        for si, seed in enumerate(seeds):
          run = sorted((r["steps"], r["mig"]) for r in curves
                       if (r["method"], r["value"], r["seed"]) == (method, value, seed))
          if run:
            ax.plot(*zip(*run), "o" + ("-", "--", ":")[si % 3], color=f"C{ci % 10}", ms=3,
                    label=f"{METHODS[method].symbol}={value:g}" if si == 0 else None)
      ax.set_title(f"{LABELS[method]} (lines: seeds {', '.join(map(str, seeds))})", fontsize=9)
      ax.set_xlabel("training steps")
      if seconds_per_step:
        top = ax.secondary_xaxis("top", functions=(lambda n: n * seconds_per_step,
                                                   lambda t: t / seconds_per_step))
        top.set_xlabel("≈ training seconds of one run", fontsize=8)
      ax.legend(fontsize=7)
    axes[0].set_ylabel("MIG (shape excluded)")


def methods(path: pathlib.Path, summary, rows: list[dict[str, Any]]) -> None:
  """One panel per method: MIG (mean line, min–max band, every run) and the
  other metrics' means against its hyperparameter; a strip plot when every
  method has one value."""
  names = [m for m in METHODS if any(k[0] == m for k in summary)]
  if all(sum(k[0] == m for k in summary) == 1 for m in names):
    _methods_strip(path, names, rows)
    return
  with figure(path, len(names), (3.6, 3.4), sharey=True) as axes:
    for ax, method in zip(axes, names):
      keys = [k for k in summary if k[0] == method]
      values = [k[1] for k in keys]
      for ci, metric in enumerate(m for m in METRIC_TITLES if m != "tc"):
        mean = np.array([summary[k][metric][0] for k in keys])
        if np.all(np.isnan(mean)):
          continue
        ax.plot(values, mean, "o-" if metric == "mig" else ".--", color=f"C{ci}",
                label=METRIC_TITLES[metric], lw=2 if metric == "mig" else 1)
        if metric == "mig":
          low, high = (np.array([summary[k][metric][i] for k in keys]) for i in (1, 2))
          ax.fill_between(values, low, high, color="C0", alpha=0.2)
      if len(values) > 1 and max(values) / max(min(values), 1e-9) >= 10:
        ax.set_xscale("log")
      ax.set_xlabel(METHODS[method].symbol)
      ax.set_title(LABELS[method], fontsize=10)
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize=7)


def _methods_strip(path: pathlib.Path, names: list[str], rows: list[dict[str, Any]]) -> None:
  """One value per method: methods on x, each seed's MIG a dot, the mean a bar."""
  with figure(path, 1, (1.6 * len(names) + 2, 4)) as (ax,):
    for x, method in enumerate(names):
      values = [r["mig"] for r in rows if r["method"] == method]
      ax.plot([x - 0.25, x + 0.25], [np.mean(values)] * 2, "-", color="k", lw=2)
      spread = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
      ax.plot(x + np.asarray(spread), values, "o", color=f"C{x % 10}", ms=6, alpha=0.8)
    settings = sorted({f"{METHODS[r['method']].symbol} = {r['value']:g}" for r in rows
                       if r["method"] in names})
    ax.set_xticks(range(len(names)), [LABELS[m] for m in names], rotation=25, ha="right",
                  fontsize=8)
    ax.set_ylabel("MIG (shape excluded)")
    ax.set_title(f"{', '.join(settings)}: every seed a dot, the bar the mean", fontsize=9)
