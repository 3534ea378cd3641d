//! Two-sample Kolmogorov-Smirnov test, a line-by-line port of `scipy.stats.ks_2samp` (SciPy 1.17).
//!
//! Owns the statistic (ECDFs evaluated at every pooled point, so ties are handled as SciPy does),
//! the exact lattice-path p-values (Hodges; Viehmann's inside recursion for two-sided) and the
//! asymptotic ones (the finite-n Kolmogorov distribution `kstwo` after Simard & L'Ecuyer for
//! two-sided, Hodges' approximation for one-sided). It does no I/O and never panics on data:
//! bad input is a [`StatsError`].
//!
//! Kept with the SciPy reference tests rather than in `canaryd::stats`: no check uses it yet, so
//! the daemon does not carry it; the distribution checks of a later issue may move it back.

use canaryd::stats::{Alternative, StatsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    Exact,
    Asymptotic,
    /// SciPy's rule: exact when max(n, m) <= 10000, falling back to asymptotic when exact fails.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    /// The statistic for the chosen alternative (sup |F_x - F_y| for two-sided).
    pub d: f64,
    pub p_value: f64,
    /// The method actually used (never `Auto`).
    pub method: KsMethod,
}

/// Largest sample size for which `Auto` tries the exact distribution (SciPy's `MAX_AUTO_N`).
const MAX_AUTO_N: usize = 10_000;

/// Two-sample KS test of `x` against `y`, as `scipy.stats.ks_2samp(x, y, alternative, method)`.
///
/// `Greater` means F_x > F_y somewhere (x tends to be *smaller*), `Less` the opposite, exactly as
/// SciPy defines them. With the exact method, `d` is rounded to the lattice `h / lcm(n, m)` as
/// SciPy does. An exact computation that fails numerically falls back to the asymptotic one, and
/// `method` says which one was used.
pub fn ks_2samp(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: KsMethod,
) -> Result<KsTest, StatsError> {
    check_sample(x, "ks_2samp x")?;
    check_sample(y, "ks_2samp y")?;
    let n1 = x.len();
    let n2 = y.len();
    let (min_s, max_s) = ecdf_extremes(x, y);
    let mut d = if alternative == Alternative::Less
        || (alternative == Alternative::TwoSided && min_s > max_s)
    {
        min_s
    } else {
        max_s
    };

    let g = gcd(n1 as u64, n2 as u64);
    let n1g = n1 as u64 / g;
    let n2g = n2 as u64 / g;
    let mut used = match method {
        KsMethod::Auto => {
            if n1.max(n2) <= MAX_AUTO_N {
                KsMethod::Exact
            } else {
                KsMethod::Asymptotic
            }
        }
        KsMethod::Exact => {
            // lcm(n1, n2) too big for SciPy's int32 lattice: asymptotic instead.
            if n1g as f64 >= i32::MAX as f64 / n2g as f64 {
                KsMethod::Asymptotic
            } else {
                KsMethod::Exact
            }
        }
        KsMethod::Asymptotic => KsMethod::Asymptotic,
    };

    let mut prob = f64::NEG_INFINITY;
    if used == KsMethod::Exact {
        match attempt_exact(n1 as u64, n2 as u64, g, d, alternative) {
            (true, d_lattice, p) => {
                d = d_lattice;
                prob = p;
            }
            (false, d_lattice, _) => {
                d = d_lattice;
                used = KsMethod::Asymptotic;
            }
        }
    }
    if used == KsMethod::Asymptotic {
        let (m, n) = if n1 >= n2 {
            (n1 as f64, n2 as f64)
        } else {
            (n2 as f64, n1 as f64)
        };
        let en = m * n / (m + n);
        prob = if alternative == Alternative::TwoSided {
            let n_eff = en.round_ties_even();
            if n_eff < 1.0 {
                return Err(StatsError::TooFew {
                    what: "ks_2samp asymptotic (x and y together)",
                    needed: 3,
                    got: n1 + n2,
                });
            }
            kstwo_sf(d, n_eff as u64)
        } else {
            let z = en.sqrt() * d;
            // Hodges' approximation, eqn 5.3; needs m to be the larger sample.
            let expt = -2.0 * z * z - 2.0 * z * (m + 2.0 * n) / (m * n * (m + n)).sqrt() / 3.0;
            expt.exp()
        };
    }
    Ok(KsTest {
        d,
        p_value: prob.clamp(0.0, 1.0),
        method: used,
    })
}

fn check_sample(v: &[f64], what: &'static str) -> Result<(), StatsError> {
    if v.is_empty() {
        return Err(StatsError::TooFew {
            what,
            needed: 1,
            got: 0,
        });
    }
    if v.iter().any(|a| !a.is_finite()) {
        return Err(StatsError::NonFinite { what });
    }
    Ok(())
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// (max(0, -min(F_x - F_y)), max(F_x - F_y)) over all pooled points, with F evaluated as
/// `count(<= v) / n` exactly as SciPy's `searchsorted(side='right') / n`.
fn ecdf_extremes(x: &[f64], y: &[f64]) -> (f64, f64) {
    let mut a = x.to_vec();
    let mut b = y.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut min_diff = f64::INFINITY;
    let mut max_diff = f64::NEG_INFINITY;
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
        min_diff = min_diff.min(diff);
        max_diff = max_diff.max(diff);
    }
    ((-min_diff).clamp(0.0, 1.0), max_diff)
}

/// SciPy's `_attempt_exact_2kssamp`: (success, d rounded to the lattice, p).
fn attempt_exact(n1: u64, n2: u64, g: u64, d: f64, alternative: Alternative) -> (bool, f64, f64) {
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return (true, d, 1.0);
    }
    let prob = if alternative == Alternative::TwoSided {
        if n1 == n2 {
            prob_outside_square(n1, h)
        } else {
            outer_prob_inside(n1, n2, g, h)
        }
    } else if n1 == n2 {
        // binom(2n, n-h) / binom(2n, n), as a product to avoid rounding in binom.
        (0..h).fold(1.0, |p, j| {
            p * ((n1 as f64 - j as f64) / (n1 as f64 + j as f64 + 1.0))
        })
    } else {
        let num_paths = count_paths_outside(n1, n2, g, h);
        let total = binom((n1 + n2) as f64, n1 as f64);
        if !num_paths.is_finite() || !total.is_finite() || num_paths > total {
            return (false, d, f64::NAN);
        }
        num_paths / total
    };
    if !(0.0..=1.0).contains(&prob) {
        return (false, d, prob);
    }
    (true, d, prob)
}

/// Pr(D_{n,n} >= h/n), SciPy's `_compute_prob_outside_square` (Horner-like alternating sum).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as f64, h as f64);
    let mut p = 0.0;
    let mut k = (n / h).floor();
    while k >= 0.0 {
        let mut p1 = 1.0;
        let mut j = 0.0;
        while j < h {
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1.0);
            j += 1.0;
        }
        p = p1 * (1.0 - p);
        k -= 1.0;
    }
    2.0 * p
}

/// Proportion of lattice paths from (0,0) to (m,n) that leave |x/m - y/n| < h/lcm, computed
/// directly as 1 - inside (Viehmann's recursion), SciPy's `_compute_outer_prob_inside_method`.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let floor_div = |a: i64, b: i64| (a as f64 / b as f64).floor() as i64;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            let prev = a
                .get((jj + minj - lastminj) as usize)
                .copied()
                .unwrap_or(1.0);
            val = (prev * fi + val * j) / (fi + j);
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let start = (maxj - minj) as usize;
            let end = (start + (lastlen - curlen) as usize).min(a.len());
            for v in a.iter_mut().take(end).skip(start) {
                *v = 1.0;
            }
        }
    }
    a.get((maxj - minj - 1) as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Number of lattice paths from (0,0) to (m,n) reaching m*y <= n*x - h*g (one-sided), SciPy's
/// `_count_paths_outside_method`. May overflow to a non-finite value; callers check.
fn count_paths_outside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let lxj = n + (mg - h).div_euclid(mg);
    if lxj <= 0 {
        return binom((m + n) as f64, n as f64);
    }
    let xj: Vec<i64> = (0..lxj)
        .map(|j| (h + mg * j + ng - 1).div_euclid(ng))
        .collect();
    let lxj = lxj as usize;
    let mut b = vec![0.0f64; lxj];
    b[0] = 1.0;
    for j in 1..lxj {
        let mut bj = binom((xj[j] + j as i64) as f64, j as f64);
        for i in 0..j {
            let c = binom((xj[j] - xj[i] + (j - i) as i64) as f64, (j - i) as f64);
            bj -= c * b[i];
        }
        if !bj.is_finite() {
            return f64::NAN;
        }
        b[j] = bj;
    }
    let mut num_paths = 0.0;
    for (j, bj) in b.iter().enumerate() {
        let c = binom(((m - xj[j]) + (n - j as i64)) as f64, (n - j as i64) as f64);
        num_paths += bj * c;
    }
    num_paths
}

/// Binomial coefficient for non-negative integer arguments, as `scipy.special.binom`: a direct
/// product for small k, otherwise through log-gamma.
fn binom(n: f64, k: f64) -> f64 {
    if k < 0.0 || k > n {
        return 0.0;
    }
    let k = if k > n / 2.0 { n - k } else { k };
    if k < 20.0 {
        let (mut num, mut den) = (1.0f64, 1.0f64);
        let mut i = 1.0;
        while i <= k {
            num *= i + n - k;
            den *= i;
            if num.abs() > 1e50 {
                num /= den;
                den = 1.0;
            }
            i += 1.0;
        }
        return num / den;
    }
    (ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)).exp()
}

fn ln_gamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

// ---------------------------------------------------------------------------------------------
// The two-sided one-sample Kolmogorov distribution for finite n (SciPy's `kstwo`, `_kolmogn`).
// ---------------------------------------------------------------------------------------------

const E128: i32 = 128;
const MIN_LOG: f64 = -708.0;
/// log(2^-1022), cephes MINLOG.
const CEPHES_MINLOG: f64 = -7.083_964_185_322_641e2;

fn ep128() -> f64 {
    2f64.powi(E128)
}
fn em128() -> f64 {
    2f64.powi(-E128)
}

/// Survival function Pr(D_n >= x) of the two-sided one-sample KS statistic.
pub(crate) fn kstwo_sf(x: f64, n: u64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    let nf = n as f64;
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let t = nf * x;
    if t <= 1.0 {
        // Ruben-Gambino: 1/2n <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0)))
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - prob).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nxsquared = t * x;
    if n <= 140 {
        let cdf = if nxsquared <= 0.754693 {
            kolmogn_dmtw_cdf(n, x)
        } else if nxsquared <= 4.0 {
            kolmogn_pomeranz_cdf(n, x)
        } else {
            return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
        };
        return (1.0 - cdf.clamp(0.0, 1.0)).clamp(0.0, 1.0);
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

/// log(n! / n^n) by Stirling's series with n*log(n) removed up front.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // B_{2j} / (2j (2j - 1)) for j = 8, ..., 1 (Bernoulli numbers B_{2j}).
    const STIRLING: [f64; 8] = [
        -3617.0 / 122_400.0,
        1.0 / 156.0,
        -691.0 / 360_360.0,
        1.0 / 1188.0,
        -1.0 / 1680.0,
        1.0 / 1260.0,
        -1.0 / 360.0,
        1.0 / 12.0,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let poly = STIRLING.iter().fold(0.0, |acc, c| acc * z + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * m];
    for i in 0..m {
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..m {
                c[i * m + j] += aik * b[k * m + j];
            }
        }
    }
    c
}

/// Pr(D_n <= d) by Durbin's matrix method as arranged by Marsaglia, Tsang & Wang.
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut hm = vec![0.0; m * m];
    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powi(j as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let mut hpwr = vec![0.0; m * m];
    for i in 0..m {
        hpwr[i * m + i] = 1.0;
    }
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut hexpnt: i32 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > ep128() {
            for v in hm.iter_mut() {
                *v /= ep128();
            }
            hexpnt += E128;
        }
        nn /= 2;
    }
    let mut p = hpwr[(k - 1) * m + (k - 1)];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < em128() {
            p *= ep128();
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p *= 2f64.powi(expnt);
    }
    p.clamp(0.0, 1.0)
}

fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (ip1div2, ip1mod2) = ((i + 1) / 2, (i + 1) % 2);
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// Pr(D_n <= x) by Pomeranz's recursion.
fn kolmogn_pomeranz_cdf(n: u64, x: f64) -> f64 {
    let n_i = n as i64;
    let nf = n as f64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let mut gpower = vec![1.0; npwrs];
    let mut twogpower = vec![1.0; npwrs];
    let mut onem2gpower = vec![1.0; npwrs];
    let (g_n, two_g_n, one_m2g_n) = (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        let mf = m as f64;
        gpower[m] = gpower[m - 1] * g_n / mf;
        twogpower[m] = twogpower[m - 1] * two_g_n / mf;
        onem2gpower[m] = onem2gpower[m - 1] * one_m2g_n / mf;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s): (i64, i64) = (0, 0);
    let mut expnt: i32 = 0;
    let (mut j1, mut _j2) = pomeranz_j1j2(0, n_i, ll, ceilf, roundf);
    let mut conv = Vec::new();
    for i in 1..(2 * n_i + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.iter_mut().for_each(|v| *v = 0.0);
        let (nj1, j2) = pomeranz_j1j2(i, n_i, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * n_i + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let start = (k1 - v0s).max(0) as usize;
            let end = (start + ln2 as usize).min(npwrs);
            let a = &v0[start.min(end)..end];
            let b = &pwrs[..(ln2 as usize).min(npwrs)];
            conv.clear();
            conv.resize(a.len() + b.len() - 1, 0.0);
            for (ia, va) in a.iter().enumerate() {
                for (ib, vb) in b.iter().enumerate() {
                    conv[ia + ib] += va * vb;
                }
            }
            let conv_start = (j1 - k1).max(0) as usize;
            let conv_len = (j2 - j1 + 1).max(0) as usize;
            for (idx, slot) in v1.iter_mut().take(conv_len).enumerate() {
                *slot = conv.get(conv_start + idx).copied().unwrap_or(0.0);
            }
            let vmax = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < vmax && vmax < em128() {
                v1.iter_mut().for_each(|v| *v *= ep128());
                expnt -= E128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let mut ans = usize::try_from(n_i - v1s)
        .ok()
        .and_then(|idx| v1.get(idx).copied())
        .unwrap_or(0.0);
    for m in 1..=n {
        if ans.abs() > ep128() {
            ans *= em128();
            expnt += E128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans *= 2f64.powi(expnt);
    }
    ans.clamp(0.0, 1.0)
}

/// Pelz-Good approximation to Pr(D_n <= x).
fn kolmogn_pelz_good_cdf(n: u64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let pi2 = PI * PI;
    let pi4 = pi2 * pi2;
    let pi6 = pi4 * pi2;
    let sqrt2pi = (2.0 * PI).sqrt();
    let z = (n as f64).sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -pi2 / 8.0 / z2;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (kv, c) in k.iter_mut().zip(coeffs) {
            *kv = *kv * qpower + c;
        }
    }
    let denoms = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (kv, den) in k.iter_mut().zip(denoms) {
        *kv = *kv * q * sqrt2pi / den;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for kk in (1..=maxk).rev() {
        let kf = kk as f64;
        let ksq = kf * kf;
        let qp = q2.powf(ksq);
        k2extra += ksq * qp;
        let kspi = PI * kf;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    let nf = n as f64;
    k.iter()
        .enumerate()
        .map(|(i, kv)| kv / nf.powf(i as f64 / 2.0))
        .sum()
}

/// Survival function of the one-sided one-sample statistic D_n^+ (`scipy.special.smirnov`),
/// by the Birnbaum-Tingey sum with every term evaluated in log space.
pub(crate) fn smirnov_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() || !(0.0..=1.0).contains(&x) || n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let n_i = n as i64;
    let nf = n as f64;
    // floor(n*x) and its remainder, carrying the rounding error of the product.
    let hi = nf * x;
    let lo = nf.mul_add(x, -hi);
    let mut nxfl = hi.floor();
    if hi == nxfl && lo < 0.0 {
        nxfl -= 1.0;
    }
    let mut alpha = (hi - nxfl) + lo;
    if alpha >= 1.0 {
        nxfl += 1.0;
        alpha = 0.0;
    }
    let alpha = alpha.max(0.0);
    let nxfl = nxfl as i64;
    let mut n1mxfl = n_i - nxfl - i64::from(alpha != 0.0);
    let mut n1mxceil = n_i - nxfl;
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = (1.0 + x).powf(nf - 1.0);
        return 1.0 - x * t;
    }
    if -2.0 * nf * x * x < CEPHES_MINLOG {
        return 0.0;
    }
    if nxfl >= n_i - 1 {
        return (1.0 - x).powf(nf);
    }
    if n > 1_000_000 {
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 + logp.exp_m1()
        };
    }
    let n_upper_terms = n_i - n1mxceil + 1;
    let use_upper = (n_upper_terms <= 1 && x < 0.5)
        || (n_i >= 10 && n_upper_terms <= 3 && x <= 0.5 / nf.sqrt());
    // log C(n, v), built up as v increases.
    let alpha_f = alpha;
    let nxfl_f = nxfl as f64;
    // A_v = C(n,v) (1 - x - v/n)^(n-v) (x + v/n)^(v-1), with 1-x-v/n = (n - nxfl - v - alpha)/n
    // and x + v/n = (nxfl + v + alpha)/n computed from exact integers.
    let term = |v: i64, log_c: f64| -> f64 {
        let base2 = (n_i - nxfl - v) as f64 - alpha_f;
        let base1 = nxfl_f + v as f64 + alpha_f;
        let p2 = (n_i - v) as f64;
        let p1 = (v - 1) as f64;
        let sign = if base2 < 0.0 && (n_i - v) % 2 == 1 {
            -1.0
        } else {
            1.0
        };
        if base2 == 0.0 && p2 > 0.0 {
            return 0.0;
        }
        let log_t = log_c + p2 * (base2.abs() / nf).ln() + p1 * (base1 / nf).ln();
        sign * log_t.exp()
    };
    let (n_terms, first) = if use_upper {
        (n_i - n1mxceil + 1, (1.0 + x).powf(nf - 1.0))
    } else {
        (n1mxfl + 1, (1.0 - x).powf(nf) / x)
    };
    let mut sum = first;
    let mut log_c = 0.0f64;
    let vmid = n_i / 2;
    for j in 1..n_terms {
        log_c += ((n_i - j + 1) as f64 / j as f64).ln();
        let v = if use_upper { n_i - j } else { j };
        let aj = term(v, log_c);
        if aj.is_finite() {
            sum += aj;
        }
        if aj != 0.0 {
            if 4.0 * (n_terms - j) as f64 * aj.abs() < f64::EPSILON * sum && j != n_terms - 1 {
                break;
            }
        } else if j > vmid {
            break;
        }
    }
    let prob = x * sum;
    let sf = if use_upper { 1.0 - prob } else { prob };
    sf.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Alternative::{Greater, Less, TwoSided};

    /// Agreement asked of the whole stats module: 1e-7 relative or 1e-12 absolute.
    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= (1e-7 * want.abs()).max(1e-12),
            "got {got}, want {want}"
        );
    }

    fn check(x: &[f64], y: &[f64], alt: Alternative, method: KsMethod, d: f64, p: f64) {
        let r = ks_2samp(x, y, alt, method).unwrap();
        assert_close(r.d, d);
        assert_close(r.p_value, p);
    }

    // Expected values below are scipy.stats.ks_2samp (SciPy 1.17.1).
    #[test]
    fn separated_samples_match_scipy_exact() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [6.0, 7.0, 8.0];
        check(&x, &y, TwoSided, KsMethod::Exact, 1.0, 0.03571428571428571);
        // x is smaller, so F_x > F_y: `greater` fires, `less` sees nothing.
        check(&x, &y, Greater, KsMethod::Exact, 1.0, 0.017857142857142856);
        check(&x, &y, Less, KsMethod::Exact, 0.0, 1.0);
        check(&y, &x, Less, KsMethod::Exact, 1.0, 0.017857142857142856);
    }

    #[test]
    fn ties_between_samples_match_scipy() {
        let x = [6.0, 1.0, 7.0, 2.0, 4.0, 2.0, 6.0];
        let y = [3.0, 2.0, 2.0, 5.0];
        check(
            &x,
            &y,
            TwoSided,
            KsMethod::Exact,
            0.42857142857142855,
            0.6606060606060606,
        );
        check(
            &x,
            &y,
            Less,
            KsMethod::Exact,
            0.42857142857142855,
            0.3393939393939394,
        );
        check(
            &x,
            &y,
            Greater,
            KsMethod::Exact,
            0.14285714285714285,
            0.8333333333333334,
        );
    }

    #[test]
    fn exact_and_asymptotic_match_scipy_on_unequal_sizes() {
        let a: Vec<f64> = (0..40).map(|i| i as f64 * 0.5).collect();
        let b: Vec<f64> = (0..30).map(|i| i as f64 * 0.5 + 3.3).collect();
        check(&a, &b, TwoSided, KsMethod::Exact, 0.175, 0.6182530877166545);
        check(
            &a,
            &b,
            TwoSided,
            KsMethod::Asymptotic,
            0.175,
            0.6139535492873687,
        );
        check(&a, &b, Less, KsMethod::Exact, 0.1, 0.6741806887191223);
        check(&a, &b, Less, KsMethod::Asymptotic, 0.1, 0.6452643261854819);
        check(&a, &b, Greater, KsMethod::Exact, 0.175, 0.31871291800637414);
        check(
            &a,
            &b,
            Greater,
            KsMethod::Asymptotic,
            0.175,
            0.2962159094719498,
        );
        let auto = ks_2samp(&a, &b, TwoSided, KsMethod::Auto).unwrap();
        assert_eq!(auto.method, KsMethod::Exact);
    }

    #[test]
    fn identical_samples_give_d_zero_and_p_one() {
        let x = [1.0, 2.0, 3.0];
        let r = ks_2samp(&x, &x, TwoSided, KsMethod::Auto).unwrap();
        assert_eq!((r.d, r.p_value), (0.0, 1.0));
    }

    #[test]
    fn tiny_samples_match_scipy() {
        check(&[0.5], &[1.5], TwoSided, KsMethod::Exact, 1.0, 1.0);
        check(
            &[0.0],
            &[1.0, 2.0],
            TwoSided,
            KsMethod::Asymptotic,
            1.0,
            0.0,
        );
    }

    #[test]
    fn auto_uses_asymptotic_above_ten_thousand_points() {
        let x: Vec<f64> = (0..10_001).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..50).map(|i| i as f64 * 200.0 + 0.5).collect();
        let r = ks_2samp(&x, &y, TwoSided, KsMethod::Auto).unwrap();
        assert_eq!(r.method, KsMethod::Asymptotic);
        assert!((0.0..=1.0).contains(&r.p_value));
    }

    #[test]
    fn exact_one_sided_falls_back_when_path_counts_overflow() {
        // binom(2600, 1300) overflows a double, so SciPy's exact one-sided count fails.
        let x: Vec<f64> = (0..1300).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..1299).map(|i| i as f64 + 0.25).collect();
        let r = ks_2samp(&x, &y, Greater, KsMethod::Exact).unwrap();
        assert_eq!(r.method, KsMethod::Asymptotic);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            ks_2samp(&[], &[1.0], TwoSided, KsMethod::Auto),
            Err(StatsError::TooFew { got: 0, .. })
        ));
        assert!(matches!(
            ks_2samp(&[1.0, f64::NAN], &[1.0], TwoSided, KsMethod::Auto),
            Err(StatsError::NonFinite { .. })
        ));
        assert!(matches!(
            ks_2samp(&[1.0], &[f64::INFINITY], TwoSided, KsMethod::Auto),
            Err(StatsError::NonFinite { .. })
        ));
        // round(1*1/2) = 0: SciPy's kstwo has no such n (it returns NaN).
        assert!(ks_2samp(&[0.0], &[1.0], TwoSided, KsMethod::Asymptotic).is_err());
    }

    #[test]
    fn kolmogorov_distribution_matches_scipy_kstwo_in_every_branch() {
        // (n, x, scipy.stats.kstwo.sf(x, n))
        let cases = [
            (10, 0.274, 0.3715203845434957),        // Durbin matrix
            (100, 0.125, 0.08050040280210224),      // Pomeranz
            (46, 0.69, 2.3409708557608865e-22),     // 2 * smirnov, x >= 0.5
            (192, 0.2148, 2.9624698542085577e-08),  // 2 * smirnov, large n
            (833, 0.0318, 0.36106585365599564),     // Pelz-Good
            (20000, 0.01, 0.03638603905248727),     // Pelz-Good
            (300, 0.003, 1.0),                      // below 1/(2n)
            (2500, 0.3708, 6.203156681237437e-309), // deep tail
        ];
        for (n, x, want) in cases {
            assert_close(kstwo_sf(x, n), want);
        }
    }

    #[test]
    fn smirnov_matches_scipy_special() {
        let cases = [
            (5, 0.3, 0.34282),
            (100, 0.1, 0.1265906584562817),
            (2500, 0.05, 3.5833964586753977e-06),
            (20, 0.96, 1.0995116277760194e-28),
        ];
        for (n, x, want) in cases {
            assert_close(smirnov_sf(n, x), want);
        }
    }
}
