"""Statistics of the report: power-law fits with confidence intervals, Spearman, seed summaries.

Power law `err = a * C^-b` is fitted by least squares on `log err = log a - b log C` (the form in
which scaling curves are straight, and in which seeds at one compute weigh equally) with
`scipy.stats.linregress`. The slope's confidence interval is t-based (n - 2 degrees of freedom,
linregress's standard error; exact for Gaussian residuals in log space); `bootstrap_exponent`
gives a percentile bootstrap over points (`scipy.stats.bootstrap`, paired resampling) for when
residuals are not Gaussian. Spearman is `scipy.stats.spearmanr` (ties share their mean rank).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

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
  line = stats.linregress(x, y)
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * float(line.stderr)
  b = -float(line.slope)
  r2 = float(line.rvalue) ** 2 if np.ptp(y) > 0 else 1.0  # constant error: a perfect flat fit
  return PowerLaw(a=float(math.exp(line.intercept)), b=b, b_low=b - half, b_high=b + half,
                  r2=r2, n=n)


def _slope(x, y, axis=-1):
  """Least-squares slope of y on x along `axis`; nan where x is constant (a degenerate
  resample: every point at one compute value has no slope)."""
  xm, ym = x - x.mean(axis, keepdims=True), y - y.mean(axis, keepdims=True)
  sxx = (xm * xm).sum(axis)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(sxx > 0, (xm * ym).sum(axis) / np.where(sxx > 0, sxx, 1.0), np.nan)


def bootstrap_exponent(compute, error, samples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of b: `scipy.stats.bootstrap` resampling (C, err) points in
  pairs. Resamples with a single compute value have no slope and are left out of the
  percentiles; (nan, nan) when every resample is such (e.g. two points)."""
  x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(error, float))
  if len(x) < 2:
    return float("nan"), float("nan")
  with warnings.catch_warnings():  # nan (degenerate) resamples: scipy's own interval is unused
    warnings.simplefilter("ignore", stats.DegenerateDataWarning)
    res = stats.bootstrap((x, y), lambda xs, ys, axis=-1: -_slope(xs, ys, axis), paired=True,
                          vectorized=True, n_resamples=samples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
  slopes = np.asarray(res.bootstrap_distribution)
  slopes = slopes[np.isfinite(slopes)]
  if not len(slopes):
    return float("nan"), float("nan")
  tail = (1 - confidence) / 2 * 100
  return float(np.percentile(slopes, tail)), float(np.percentile(slopes, 100 - tail))


def ranks(values) -> np.ndarray:
  """1-based ranks; tied values get the mean of the ranks they span (`scipy.stats.rankdata`)."""
  return stats.rankdata(np.asarray(values, float), method="average")


def spearman(x, y) -> float:
  """Spearman's rho (`scipy.stats.spearmanr`); nan when fewer than 3 pairs or either side is
  constant (no ranking to correlate)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan")
  return float(stats.spearmanr(x, y).statistic)


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
