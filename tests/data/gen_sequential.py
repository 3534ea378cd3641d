#!/usr/bin/env python3
"""Reference values for canaryd's anytime-valid boundary (src/stats/sequential.rs, issue 19).

Writes tests/data/sequential-reference.json, read by tests/core/sequential_reference.rs.

Every expected number is computed from the *definition* of the mixture, not from the closed
forms the Rust code uses: the e-value of a normal-mixture martingale after t points with
standardised sum s is the integral over lambda of exp(lambda*s - lambda^2*t/2) against the
mixing density (scipy.integrate.quad), and the boundary is where it reaches 1/alpha
(scipy.optimize.brentq).

- one-sided: half-normal mixing density 2*N(0, 1/m) on lambda >= 0 (Howard, Ramdas, McAuliffe,
  Sekhon 2021, one-sided normal mixture);
- two-sided: N(0, 1/m) on the whole line (Robbins; Howard et al. 2021);
- m, the mixing parameter for a target of t* points at one-sided alpha: 1/rho^2 with AsympCS's
  rho^2 = (2 ln(1/a) + ln(1 + 2 ln(1/a))) / t* at a = 2*alpha (Waudby-Smith et al. 2021);
- flatness: the one-sided boundary at t with m(t*) against the smallest boundary any m gives at
  that t (scipy.optimize.minimize_scalar over ln m).

Usage:  python3 tests/data/gen_sequential.py
Needs:  numpy, scipy
"""

import json
import math
import os

import numpy as np
import scipy
from scipy import integrate, optimize, stats

TARGET = 60.0


def mixing(alpha, target=TARGET):
    l = 2.0 * math.log(1.0 / (2.0 * alpha))
    return target / (l + math.log(1.0 + l))


def log_e_one_sided(t, s, m):
    # Integrand scaled by exp(-peak) to stay finite; the peak of lambda*s - lambda^2 (t+m)/2.
    lam_hat = max(s / (t + m), 0.0)
    peak = lam_hat * s - lam_hat ** 2 * (t + m) / 2.0
    dens = lambda lam: 2.0 * math.sqrt(m / (2 * math.pi)) * math.exp(
        lam * s - lam * lam * (t + m) / 2.0 - peak)
    width = 1.0 / math.sqrt(t + m)
    val, _ = integrate.quad(dens, 0.0, np.inf, points=None, epsabs=0, epsrel=1e-13, limit=200) \
        if lam_hat == 0 else (
            integrate.quad(dens, 0.0, lam_hat, epsabs=0, epsrel=1e-13, limit=200)[0]
            + integrate.quad(dens, lam_hat, lam_hat + 40 * width, epsabs=0, epsrel=1e-13,
                             limit=200)[0], 0)
    return math.log(val) + peak


def log_e_two_sided(t, s, m):
    lam_hat = s / (t + m)
    peak = lam_hat * s - lam_hat ** 2 * (t + m) / 2.0
    dens = lambda lam: math.sqrt(m / (2 * math.pi)) * math.exp(
        lam * s - lam * lam * (t + m) / 2.0 - peak)
    width = 1.0 / math.sqrt(t + m)
    val = integrate.quad(dens, lam_hat - 40 * width, lam_hat + 40 * width, epsabs=0,
                         epsrel=1e-13, limit=200)[0]
    return math.log(val) + peak


def boundary(log_e, t, alpha, m):
    goal = math.log(1.0 / alpha)
    hi = math.sqrt((t + m) * (math.log((t + m) / m) + 2 * goal)) * 1.5
    return optimize.brentq(lambda s: log_e(t, s, m) - goal, 0.0, hi, xtol=1e-14, rtol=1e-14)


def main():
    cases = []
    for alpha in [0.05, 0.01, 0.005, 0.001]:
        m = mixing(alpha)
        for t in [1, 10, 30, 60, 200, 1000, 2000, 100000]:
            cases.append({
                "t": t, "alpha": alpha, "target": TARGET, "m": m,
                "one_sided": boundary(log_e_one_sided, t, alpha, m),
                "two_sided": boundary(log_e_two_sided, t, alpha, m),
            })
    e_values = []
    for (t, s, alpha) in [(10, 3.0, 0.01), (60, 20.0, 0.005), (1000, -5.0, 0.05), (500, 80.0, 0.01)]:
        m = mixing(alpha)
        e_values.append({"t": t, "s": s, "m": m, "ln_e": log_e_one_sided(t, s, m)})
    flatness = []
    for alpha in [0.05, 0.005]:
        for t in [10, 20, 200, 1000]:
            m = mixing(alpha)
            best = optimize.minimize_scalar(
                lambda lm: boundary(log_e_one_sided, t, alpha, math.exp(lm)),
                bounds=(math.log(0.01), math.log(1e5)), method="bounded",
                options={"xatol": 1e-10})
            flatness.append({
                "t": t, "alpha": alpha,
                "best": best.fun,
                "ratio": boundary(log_e_one_sided, t, alpha, m) / best.fun,
            })
    out = {
        "meta": {
            "generator": "tests/data/gen_sequential.py",
            "numpy": np.__version__, "scipy": scipy.__version__,
            "target_points": TARGET,
            "calls": "scipy.integrate.quad of the mixture, scipy.optimize.brentq for the "
                     "boundary, scipy.optimize.minimize_scalar for the best m",
        },
        "boundaries": cases, "e_values": e_values, "flatness": flatness,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sequential-reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for c in flatness:
        print(c)


if __name__ == "__main__":
    main()
