"""Statistics of the report: power-law fits with confidence intervals, Spearman, seed summaries.

Power law `err = a * C^-b` is fitted by least squares on `log err = log a - b log C` (the form in
which scaling curves are straight, and in which seeds at one compute weigh equally). The slope's
confidence interval is t-based (n - 2 degrees of freedom; exact for Gaussian residuals in log
space); `bootstrap_exponent` gives a percentile bootstrap over points for when residuals are not
Gaussian. Spearman is the Pearson correlation of average ranks (ties share their mean rank), as
scipy.stats.spearmanr computes it, in numpy so it is easy to check by hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass
class PowerLaw:
  a: float
  b: float
  b_low: float  # confidence interval of the exponent
  b_high: float
  r2: float
  n: int

  def __call__(self, compute):
    return self.a * np.power(compute, -self.b)


def fit_power_law(compute, error, confidence: float = 0.95) -> PowerLaw:
  """Fits err = a * C^-b on positive (C, err) pairs; needs >= 3 points at >= 2 compute values."""
  x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(error, float))
  n = len(x)
  if n < 3 or len(set(x.tolist())) < 2:
    raise ValueError(f"a power-law fit needs >= 3 points at >= 2 compute values (got {n})")
  slope, intercept = np.polyfit(x, y, 1)
  resid = y - (slope * x + intercept)
  ss_res, ss_tot = float(resid @ resid), float(((y - y.mean()) ** 2).sum())
  se = math.sqrt(ss_res / (n - 2) / float(((x - x.mean()) ** 2).sum()))
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * se
  b = -float(slope)
  return PowerLaw(a=float(math.exp(intercept)), b=b, b_low=b - half, b_high=b + half,
                  r2=1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, n=n)


def bootstrap_exponent(compute, error, samples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of b (resampling points; degenerate resamples skipped)."""
  x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(error, float))
  rng = np.random.default_rng(seed)
  bs = []
  for _ in range(samples):
    idx = rng.integers(0, len(x), len(x))
    if len(set(x[idx].tolist())) >= 2:
      bs.append(-np.polyfit(x[idx], y[idx], 1)[0])
  tail = (1 - confidence) / 2 * 100
  return float(np.percentile(bs, tail)), float(np.percentile(bs, 100 - tail))


def ranks(values) -> np.ndarray:
  """1-based ranks; tied values get the mean of the ranks they span."""
  v = np.asarray(values, float)
  order = np.argsort(v, kind="mergesort")
  out = np.empty(len(v))
  i = 0
  while i < len(v):
    j = i
    while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
      j += 1
    out[order[i:j + 1]] = (i + j) / 2 + 1
    i = j + 1
  return out


def spearman(x, y) -> float:
  """Spearman's rho; nan when fewer than 3 pairs or either side is constant."""
  if len(x) < 3:
    return float("nan")
  rx, ry = ranks(x), ranks(y)
  if rx.std() == 0 or ry.std() == 0:
    return float("nan")
  return float(np.corrcoef(rx, ry)[0, 1])


@dataclasses.dataclass
class Summary:
  mean: float
  std: float  # sample standard deviation over seeds (0 for one seed)
  low: float
  high: float
  n: int

  def __str__(self):
    if self.n == 0:
      return "-"
    return f"{self.mean:.3f} ± {self.std:.3f}" if self.n > 1 else f"{self.mean:.3f}"


def summarize(values) -> Summary:
  v = np.asarray([x for x in values if x is not None and not _isnan(x)], float)
  if not len(v):
    return Summary(float("nan"), float("nan"), float("nan"), float("nan"), 0)
  return Summary(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                 float(v.min()), float(v.max()), len(v))


def _isnan(x) -> bool:
  return isinstance(x, float) and math.isnan(x)
