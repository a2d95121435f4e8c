"""A PNG of a probe result: accuracy per question type under erasure, and TCCD gain vs alpha."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on training hosts
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

from mmscale import paths  # noqa: E402  pylint: disable=wrong-import-position


def plot_probe(result: dict, path: str) -> str:
  er = result["erasure"]
  qtypes = sorted(q for q in er if q != "all") + ["all"]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  x = np.arange(len(qtypes))
  for i, (key, label) in enumerate([("base", "no erasure"), ("text_erased", "text erased"),
                                    ("image_erased", "image erased")]):
    left.bar(x + (i - 1) * 0.27, [er[q][key] for q in qtypes], 0.27, label=label)
  majority = result.get("majority", {})
  for j, q in enumerate(qtypes):
    if q in majority:
      left.hlines(majority[q], j - 0.4, j + 0.4, colors="k", linestyles="dotted")
  left.set_xticks(x, qtypes)
  left.set_ylabel("exact-match accuracy")
  left.set_title(f"centroid erasure (layers {result['layers']}, k={result['k']}; "
                 "dotted: majority)", fontsize=9)
  left.legend(fontsize=8)
  alphas = [float(a) for a in result["tccd"]]
  for q in qtypes:
    right.plot(alphas, [result["tccd"][a][q]["gain"] for a in result["tccd"]], marker="o",
               label=q, linewidth=2.5 if q == "all" else 1.2)
  right.axhline(0.0, color="k", linewidth=0.6)
  right.set_xlabel("alpha")
  right.set_ylabel("accuracy gain over plain decoding")
  right.set_title(f"TCCD (beta={result['beta']})", fontsize=9)
  right.legend(fontsize=8)
  fig.tight_layout()
  paths.save_figure(fig, path, dpi=120)  # local or gs://
  plt.close(fig)
  return path
