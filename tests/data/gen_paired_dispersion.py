#!/usr/bin/env python3
"""Reference cases for canaryd's paired dispersion of error counts (issue 18 point 2).

Writes tests/data/paired-dispersion-reference.json, read by tests/core/paired_dispersion_reference.rs.
The paired dispersion is a binomial GLM of the canary's share of each step's errors,
`e_c ~ Bin(e_c + e_b, pi)`, `logit pi = ln(n_c / n_b) + beta`, over the steps with traffic on both
sides and at least one error, fitted by statsmodels with `scale='X2'`: the expected numbers are
its `params[0]` (beta) and `pearson_chi2`, and `scale = pearson_chi2 / df_resid`. Inputs are generated with a fixed seed.

Usage:  python3 tests/data/gen_paired_dispersion.py
Needs:  pip install numpy statsmodels
"""

import json
import os

import numpy as np
import statsmodels
import statsmodels.api as sm


def paired(ce, cn, be, bn):
    ce, cn, be, bn = (np.asarray(v, dtype=float) for v in (ce, cn, be, bn))
    keep = (cn > 0) & (bn > 0) & (ce + be > 0)
    ce, cn, be, bn = ce[keep], cn[keep], be[keep], bn[keep]
    endog = np.column_stack([ce, be])
    fit = sm.GLM(endog, np.ones((len(ce), 1)), family=sm.families.Binomial(),
                 offset=np.log(cn / bn)).fit(scale="X2", tol=1e-14)
    # fit.scale divides by the mean number of trials when endog has two columns; the quasi-
    # likelihood scale is Pearson's X² over the residual degrees of freedom.
    scale = float(fit.pearson_chi2) / float(fit.df_resid)
    return {
        "steps": int(len(ce)),
        "log_ratio": float(fit.params[0]),
        "pearson_chi2": float(fit.pearson_chi2),
        "scale": scale,
        "phi": max(scale, 1.0),
    }


def main():
    rng = np.random.default_rng(1802)
    cases = []
    # (steps, requests per step per side, canary share of traffic, per-side sigma, shared sigma,
    #  canary factor)
    shapes = [
        (30, 500, 0.5, 0.0, 0.0, 1.0),
        (30, 500, 0.5, 0.5, 0.0, 1.0),
        (30, 600, 0.5, 0.1, 0.3, 1.5),
        (10, 2000, 0.05, 0.3, 0.5, 1.0),
        (60, 100, 0.5, 0.0, 0.0, 2.0),
        (5, 10000, 0.2, 0.8, 0.0, 1.2),
        (30, 40, 0.5, 0.5, 0.0, 1.0),
    ]
    for steps, rpm, share, sigma, shared, factor in shapes:
        ce, cn, be, bn = [], [], [], []
        for _ in range(steps):
            burst = np.exp(shared * rng.standard_normal())
            n = rpm * 2
            c_n, b_n = int(round(n * share)), int(round(n * (1 - share)))
            pc = min(0.005 * factor * burst * np.exp(sigma * rng.standard_normal()), 1.0)
            pb = min(0.005 * burst * np.exp(sigma * rng.standard_normal()), 1.0)
            ce.append(int(rng.binomial(c_n, pc)))
            be.append(int(rng.binomial(b_n, pb)))
            cn.append(c_n)
            bn.append(b_n)
        # A step without traffic on one side, which the estimator leaves out.
        ce.append(3)
        cn.append(100)
        be.append(0)
        bn.append(0)
        cases.append({"canary_errors": ce, "canary_totals": cn, "baseline_errors": be,
                      "baseline_totals": bn, "expected": paired(ce, cn, be, bn)})
    out = {
        "meta": {
            "numpy": np.__version__,
            "statsmodels": statsmodels.__version__,
            "call": "sm.GLM(column_stack([e_c, e_b]), ones, family=Binomial(), "
                    "offset=log(n_c/n_b)).fit(scale='X2') over steps with n_c, n_b > 0 and "
                    "e_c + e_b > 0; scale = pearson_chi2 / df_resid; phi = max(scale, 1)",
        },
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "paired-dispersion-reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
