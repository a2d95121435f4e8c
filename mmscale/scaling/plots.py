"""Report figures (PNG, matplotlib Agg): scaling curves, per-condition accuracy, correlations,
learning curves.

Each function takes plain data (no rows, no files besides its output) so the report decides
what is plotted and the figures stay reproducible from the results table.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

from mmscale import paths  # noqa: E402  pylint: disable=wrong-import-position


def scaling(curves: dict, path: str, ylabel: str) -> str:
  """curves: label -> (compute list, error list, PowerLaw | None); log-log points + fit lines."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for k, (label, (c, e, fit)) in enumerate(sorted(curves.items())):
    color = f"C{k % 10}"
    ax.scatter(c, e, s=14, color=color, label=label)
    if fit is not None:
      xs = np.geomspace(min(c), max(c), 50)
      ax.plot(xs, fit(xs), color=color, lw=1,
              label=f"  b={fit.b:.3f} [{fit.b_low:.3f}, {fit.b_high:.3f}]")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training FLOPs")
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=6)
  fig.tight_layout()
  paths.save_figure(fig, path, dpi=120)  # local or gs://
  plt.close(fig)
  return path


def bars(labels: list, series: dict, path: str, ylabel: str) -> str:
  """series: name -> (means, stds) aligned with labels; grouped bars with seed-spread whiskers."""
  fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4))
  width = 0.8 / max(1, len(series))
  x = np.arange(len(labels))
  for k, (name, (means, stds)) in enumerate(series.items()):
    ax.bar(x + k * width, means, width, yerr=stds, capsize=2, label=name)
  ax.set_xticks(x + 0.4 - width / 2)
  ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
  ax.set_ylabel(ylabel)
  ax.set_ylim(0, 1)
  ax.legend(fontsize=6)
  fig.tight_layout()
  paths.save_figure(fig, path, dpi=120)  # local or gs://
  plt.close(fig)
  return path


def correlation(points: dict, path: str, ylabel: str) -> str:
  """points: x-name -> (xs, ys, ystd, labels, rho); one scatter panel per x."""
  fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4), squeeze=False)
  for ax, (xname, (xs, ys, ystd, labels, rho)) in zip(axes[0], points.items()):
    ax.errorbar(xs, ys, yerr=ystd, fmt="o", ms=4, capsize=2)
    for x, y, label in zip(xs, ys, labels):
      ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xname)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Spearman rho = {rho:.2f}", fontsize=9)
  fig.tight_layout()
  paths.save_figure(fig, path, dpi=120)  # local or gs://
  plt.close(fig)
  return path


def curves(series: dict, majority: dict, path: str, title: str = "") -> str:
  """series: qtype -> (tokens, accuracy); majority: qtype -> (tokens, baseline), drawn dashed in
  the qtype's colour so each line is read against its own chance level."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for k, (name, (xs, ys)) in enumerate(series.items()):
    color = f"C{k % 10}"
    ax.plot(xs, ys, marker="o", ms=3, lw=1, color=color, label=name)
    mx, my = majority.get(name, ((), ()))
    if len(mx):
      ax.plot(mx, my, ls="--", lw=0.8, marker="_", ms=8, color=color)  # one eval: a tick
  ax.set_xlabel("training tokens")
  ax.set_ylabel("accuracy (dashed: majority baseline)")
  ax.set_ylim(0, 1)
  if title:
    ax.set_title(title, fontsize=9)
  ax.legend(fontsize=6)
  fig.tight_layout()
  paths.save_figure(fig, path, dpi=120)  # local or gs://
  plt.close(fig)
  return path
