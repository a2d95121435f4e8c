"""Scaling statistics: power-law fits recover known exponents; Spearman matches a hand value."""

import numpy as np
import pytest

from mmscale.scaling import fit


def test_power_law_recovers_exponent_exactly():
  c = np.geomspace(1e12, 1e16, 6)
  f = fit.fit_power_law(c, 3.0 * c ** -0.12)
  assert f.b == pytest.approx(0.12, abs=1e-9)
  assert f.a == pytest.approx(3.0, rel=1e-6)
  assert f.r2 == pytest.approx(1.0)


def test_power_law_t_interval_has_its_coverage():
  """Over 200 noisy synthetic sweeps (5 compute values x 3 seeds) the 95% t-interval of the
  exponent holds the true 0.08 about 95% of the time; the bootstrap interval is close."""
  c = np.repeat(np.geomspace(1e12, 1e15, 5), 3)
  hits, boot_hits = 0, 0
  for seed in range(200):
    rng = np.random.default_rng(seed)
    err = 2.0 * c ** -0.08 * np.exp(rng.normal(0, 0.03, len(c)))
    f = fit.fit_power_law(c, err)
    hits += f.b_low < 0.08 < f.b_high
    if seed < 20:
      lo, hi = fit.bootstrap_exponent(c, err, samples=200, seed=seed)
      boot_hits += lo < 0.08 < hi
  assert 0.90 <= hits / 200 <= 0.99
  assert boot_hits >= 15


def test_power_law_needs_two_compute_values():
  with pytest.raises(ValueError, match="compute values"):
    fit.fit_power_law([1e12] * 3, [0.5, 0.4, 0.6])


def test_spearman_hand_computed():
  # x ranks 1..5; y = [2, 1, 4, 3, 5] -> d = [-1, 1, -1, 1, 0], sum d^2 = 4;
  # rho = 1 - 6*4 / (5*(25-1)) = 0.8
  assert fit.spearman([10, 20, 30, 40, 50], [0.2, 0.1, 0.4, 0.3, 0.5]) == pytest.approx(0.8)


def test_spearman_ties_use_mean_ranks():
  assert list(fit.ranks([3, 1, 3, 2])) == [3.5, 1.0, 3.5, 2.0]
  # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: Pearson of the ranks (by hand: 0.9487)
  assert fit.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)


def test_summary_over_seeds():
  s = fit.summarize([0.5, 0.6, 0.7, None])
  assert (s.n, s.mean, s.low, s.high) == (3, pytest.approx(0.6), 0.5, 0.7)
  assert s.std == pytest.approx(0.1)
  assert str(s) == "0.600 ± 0.100"


def test_power_law_interval_matches_the_textbook_formula():
  """Slope CI = b ± t(0.975, n-2) * sqrt(SSres / (n-2) / Sxx) on log-log data, computed by hand."""
  c = np.array([1e12, 1e13, 1e14, 1e15, 1e16])
  err = np.array([0.62, 0.50, 0.44, 0.35, 0.30])
  x, y = np.log(c), np.log(err)
  slope, intercept = np.polyfit(x, y, 1)
  resid = y - (slope * x + intercept)
  se = np.sqrt(resid @ resid / 3 / ((x - x.mean()) ** 2).sum())
  half = 3.182446305284263 * se  # t(0.975, 3)
  f = fit.fit_power_law(c, err)
  assert (f.b, f.b_low, f.b_high) == pytest.approx((-slope, -slope - half, -slope + half))
  assert f.r2 == pytest.approx(1 - resid @ resid / ((y - y.mean()) ** 2).sum())


def test_bootstrap_of_an_exact_power_law_is_its_exponent():
  c = np.geomspace(1e12, 1e15, 6)
  lo, hi = fit.bootstrap_exponent(c, 2.0 * c ** -0.1, samples=100)
  assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_bootstrap_with_every_resample_degenerate_is_nan_not_an_error():
  """19 points at one compute value and one at another: with seed 23 all 3 resamples miss the
  odd one out, so no resample has a slope (this raised IndexError from an empty percentile)."""
  compute, err = [1e12] * 19 + [1e13], [0.5] * 19 + [0.4]
  lo, hi = fit.bootstrap_exponent(compute, err, samples=3, seed=23)
  assert np.isnan(lo) and np.isnan(hi)
  assert not np.isnan(fit.bootstrap_exponent(compute, err, samples=200, seed=23)[0])
  assert all(np.isnan(fit.bootstrap_exponent([1e12], [0.5])))


def test_spearman_matches_scipy_and_is_nan_when_constant():
  from scipy import stats  # pylint: disable=import-outside-toplevel
  x, y = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
  assert fit.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
  assert np.isnan(fit.spearman([1, 2, 3], [5, 5, 5])) and np.isnan(fit.spearman([1, 2], [1, 2]))
