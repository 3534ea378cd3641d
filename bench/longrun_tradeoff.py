#!/usr/bin/env python3
"""The price of not knowing the dependence (issue 18): size and power of the relative check's
long-run t-test on Gaussian AR(1) log-ratios (marginal σ 0.1414, a p99 pair of σ 0.1 each),
for a range of how conservative its degrees of freedom are, next to the i.i.d. t-test and the
z-test that knows ρ and σ.

`python3 bench/longrun_tradeoff.py [TRIALS]` (numpy and scipy; 40,000 trials per cell by default,
about two minutes). One-sided at 0.5% (a directional check at confidence 0.99), "size" the
false-alarm rate on healthy data, "power" the detection of +10% at ρ 0 and +20% at ρ 0.7.

The recipe mirrors `src/stats/long_run.rs` (AR(1) prewhitening with the Marriott-Pope bias
correction, Newey-West 1994 lag on the residuals, recolouring, floor at s², degrees of freedom
`1/df = 4ρ⁺/(n(1-ρ⁺)) + (L+1)/(1.5n)` with ρ⁺ = ρ̂ + k standard errors); `k` is swept. The
shipped step is k = 1 at 30 points and more, rising to 1.5 at 10 (`short_window_step`).
Spike guarding and the load wave of the Rust benchmarks are left out: this is the estimator
alone.
"""
import sys

import numpy as np
from scipy import stats

ALPHA = 0.005
SIGMA = 0.1414
TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 40000
rng = np.random.default_rng(18)


def ar1(trials, n, rho):
    x = np.empty((trials, n))
    x[:, 0] = rng.standard_normal(trials) * SIGMA
    innovation = SIGMA * np.sqrt(1 - rho * rho)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + innovation * rng.standard_normal(trials)
    return x


def acov(xc, j):
    n = xc.shape[1]
    return (xc[:, j:] * xc[:, : n - j]).sum(1) / n


def bartlett(xc, lag):
    s = acov(xc, 0)
    for j in range(1, xc.shape[1]):
        if (j <= lag).any():
            s = s + 2 * np.where(j <= lag, 1 - j / (lag + 1), 0.0) * acov(xc, j)
    return s


def nw1994_lag(xc):
    n = xc.shape[1]
    pilot = min(int(n ** (2 / 9)), n - 1)
    g0 = acov(xc, 0)
    s0, s1 = g0.copy(), np.zeros_like(g0)
    for j in range(1, pilot + 1):
        g = 2 * acov(xc, j)
        s0 += g
        s1 += j * g
    ok = s0 > 1e-12 * g0
    s = np.where(ok, s1 / np.where(ok, s0, 1), 0)
    return np.where(ok, np.minimum(np.floor(1.1447 * np.cbrt(s * s) * n ** (1 / 3)), n - 1), 0)


def long_run_p(x, k):
    """One-sided p-values of the long-run t-test, degrees of freedom at ρ̂ + k SE."""
    n = x.shape[1]
    m = x.mean(1)
    xc = x - m[:, None]
    var = (xc**2).sum(1) / (n - 1)
    rh = (xc[:, 1:] * xc[:, :-1]).sum(1) / (xc[:, :-1] ** 2).sum(1)
    rho = np.clip(rh + (1 + 3 * rh) / n, -0.97, 0.97)
    rho_up = np.minimum(np.maximum(rho, 0) + k * np.sqrt(np.maximum(1 - rho * rho, 0) / n), 0.97)
    e = xc[:, 1:] - rho[:, None] * xc[:, :-1]
    ec = e - e.mean(1)[:, None]
    lag = nw1994_lag(ec)
    lrv = np.maximum(bartlett(ec, lag) / (1 - rho) ** 2, var)
    df = np.clip(1 / (4 * rho_up / (n * (1 - rho_up)) + (lag + 1) / (1.5 * n)), 1, n - 1)
    return stats.t.sf(m / np.sqrt(lrv / n), df)


def iid_p(x, _k):
    n = x.shape[1]
    return stats.t.sf(x.mean(1) / (x.std(1, ddof=1) / np.sqrt(n)), n - 1)


def oracle_power(n, rho, shift):
    """The z-test with the exact variance of an AR(1) mean: its power in closed form."""
    lags = np.arange(1, n)
    var_mean = SIGMA**2 / n * (1 + 2 * np.sum((1 - lags / n) * rho**lags))
    return stats.norm.sf(stats.norm.isf(ALPHA) - shift / np.sqrt(var_mean))


def rate(test, k, n, rho, shift=0.0):
    return (test(ar1(TRIALS, n, rho) + shift, k) < ALPHA).mean()


RHOS = (0.0, 0.3, 0.5, 0.7, 0.8)
print(f"{TRIALS} trials per cell; one-sided {ALPHA}; sizes in %, worst over ρ in {RHOS}\n")
print("| n | test | size ρ 0 | 0.3 | 0.5 | 0.7 | 0.8 | worst | power +10%, ρ 0 | power +20%, ρ 0.7 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in (10, 30, 60):
    shipped = 1.5 * min(max((60.0 - n) / 40.0, 0.0), 1.0)
    rows = (
        [("i.i.d. t-test", iid_p, 0.0)]
        + [(f"long-run, k = {k}", long_run_p, k) for k in (0.0, 0.5, 1.0, 1.5, 2.0)]
        + [(f"**shipped**, k = {shipped:.3g}", long_run_p, shipped)]
    )
    for name, test, k in rows:
        sizes = [100 * rate(test, k, n, r) for r in RHOS]
        p0 = 100 * rate(test, k, n, 0.0, np.log(1.1))
        p7 = 100 * rate(test, k, n, 0.7, np.log(1.2))
        cells = " | ".join(f"{s:.2f}" for s in sizes)
        print(f"| {n} | {name} | {cells} | {max(sizes):.2f} | {p0:.1f} | {p7:.1f} |")
        sys.stdout.flush()
    o0 = 100 * oracle_power(n, 0.0, np.log(1.1))
    o7 = 100 * oracle_power(n, 0.7, np.log(1.2))
    print(f"| {n} | knows ρ and σ (z-test) | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | {o0:.1f} | {o7:.1f} |")
