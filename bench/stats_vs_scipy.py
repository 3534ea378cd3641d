#!/usr/bin/env python3
"""Times SciPy's and canaryd's Mann-Whitney U (asymptotic, two-sided) on identical data.

Generates normal samples with a fixed seed, writes them as raw little-endian f64 files to a
temporary directory, times `scipy.stats.mannwhitneyu(..., method="asymptotic")` in-process, then
runs `cargo run --release --example stats_timing` on the same files, and prints one table. The
U statistics and p-values of both are printed too, so the comparison is of the same computation.

Usage:  python3 bench/stats_vs_scipy.py [--repeats N] [--manifest-path Cargo.toml]
Needs:  pip install scipy numpy
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import stats

SIZES = [10_000, 1_000_000]


def time_scipy(x, y, repeats):
    times = []
    res = None
    for _ in range(repeats):
        start = time.perf_counter()
        res = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return res.statistic, res.pvalue, times[0], times[len(times) // 2]


def time_canaryd(manifest, xf, yf, repeats):
    cmd = ["cargo", "run", "--quiet", "--release", "--manifest-path", manifest,
           "--example", "stats_timing", "--", xf, yf, str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    fields = dict(kv.split("=", 1) for kv in out.split())
    return (float(fields["u"]), float(fields["p"]), float(fields["best_ms"]),
            float(fields["median_ms"]))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--manifest-path", default=os.path.join(here, "..", "Cargo.toml"))
    args = ap.parse_args()

    rng = np.random.default_rng(20240611)
    print(f"scipy {__import__('scipy').__version__}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}, repeats {args.repeats}")
    print(f"{'case':<24} {'impl':<8} {'best ms':>10} {'median ms':>10}  U / p")
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            x = rng.normal(0.0, 1.0, n)
            y = rng.normal(0.01, 1.0, n)
            xf, yf = os.path.join(tmp, f"x{n}.f64"), os.path.join(tmp, f"y{n}.f64")
            x.astype("<f8").tofile(xf)
            y.astype("<f8").tofile(yf)
            label = f"MWU asymp {n} vs {n}"
            for impl, result in (("scipy", time_scipy(x, y, args.repeats)),
                                 ("canaryd", time_canaryd(args.manifest_path, xf, yf, args.repeats))):
                u, p, best, median = result
                print(f"{label:<24} {impl:<8} {best:>10.3f} {median:>10.3f}  U={u:.1f} p={p:.12g}")


if __name__ == "__main__":
    main()
