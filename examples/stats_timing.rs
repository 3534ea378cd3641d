//! Times canaryd's Mann-Whitney U on samples written by `bench/stats_vs_scipy.py`, so SciPy and
//! canaryd run on identical data in one script.
//!
//! Usage: `cargo run --release --example stats_timing -- X.f64 Y.f64 REPEATS`, where the files
//! hold raw little-endian f64 values (`numpy.ndarray.tofile`). Prints one line:
//! `u=<U> p=<p> best_ms=<fastest> median_ms=<median>` over REPEATS asymptotic two-sided runs.

use std::time::Instant;

use anyhow::{Context, bail};
use canaryd::stats::{Alternative, MwMethod, mann_whitney_u};

fn read_f64s(path: &str) -> anyhow::Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % 8 != 0 {
        bail!(
            "{path}: {} bytes is not a whole number of f64 values",
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [x_path, y_path, repeats] = args.as_slice() else {
        bail!("usage: stats_timing X.f64 Y.f64 REPEATS");
    };
    let x = read_f64s(x_path)?;
    let y = read_f64s(y_path)?;
    let repeats: usize = repeats
        .parse()
        .context("REPEATS must be a positive integer")?;
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let r = mann_whitney_u(&x, &y, Alternative::TwoSided, MwMethod::Asymptotic, true)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        last = Some(r);
    }
    times.sort_by(f64::total_cmp);
    let r = last.context("no run")?;
    println!(
        "u={} p={:e} best_ms={:.4} median_ms={:.4}",
        r.u,
        r.p_value,
        times[0],
        times[times.len() / 2]
    );
    Ok(())
}
