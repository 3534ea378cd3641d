//! How a check's effect and limit read for people, the same on the command line, the status
//! page and in notifications: short numbers (`+0.28 pp`, not `+0.0027683643974882885`), an
//! error rate's effect in percentage points (the unit of its tolerance, which is in rate units:
//! `docs/rules.md`), a relative check's in percent of the baseline, an absolute check's on the
//! metric's own scale. Pure formatting of numbers already judged; it decides nothing.

/// The kind of limit a check was judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Relative checks: a fraction of the baseline; error-rate checks: rate units.
    Tolerance,
    /// Absolute checks: a value on the metric's scale (a rate, for error-rate-absolute).
    Threshold,
    /// Trend checks.
    MaxSlopePerMinute,
}

/// A number with about three significant digits, trailing zeros dropped, an exponent only for
/// very large or very small magnitudes: `0.28`, `12.5`, `1840`, `0.0031`, `2.5e-7`. `−` for a
/// non-finite one, which has no reading.
pub fn short(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    let magnitude = x.abs();
    if magnitude == 0.0 {
        return "0".to_string();
    }
    if !(1e-6..1e9).contains(&magnitude) {
        return format!("{x:.2e}");
    }
    let decimals = match magnitude {
        m if m >= 100.0 => 0,
        m if m >= 10.0 => 1,
        m if m >= 0.1 => 2,
        // Two significant digits below 0.1: 0.012, 0.0031.
        m => (1 - m.log10().floor() as i32).clamp(2, 8) as usize,
    };
    let text = format!("{x:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    };
    if text == "-0" { "0".to_string() } else { text }
}

/// [`short`] with its sign: `+0.4`, `-2`, `0`.
pub fn signed(x: f64) -> String {
    let s = short(x);
    if x > 0.0 && x.is_finite() {
        format!("+{s}")
    } else {
        s
    }
}

/// A rate (0–1) as a percentage: `0.52%`.
pub fn rate(r: f64) -> String {
    match r.is_finite() {
        true => format!("{}%", short(r * 100.0)),
        false => "-".to_string(),
    }
}

/// A difference of rates in percentage points: `+0.28 pp`.
pub fn percentage_points(d: f64) -> String {
    match d.is_finite() {
        true => format!("{} pp", signed(d * 100.0)),
        false => "-".to_string(),
    }
}

/// A ratio to its reference as a change in percent: 1.125 → `+12.5%`.
pub fn percent_change(ratio: f64) -> String {
    match ratio.is_finite() {
        true => format!("{}%", signed((ratio - 1.0) * 100.0)),
        false => "-".to_string(),
    }
}

/// A check's effect in the unit of its limit: an error rate's difference in percentage points
/// (`+0.28 pp`); against a tolerance, the change relative to the baseline (`+12.5%`);
/// against a threshold, the distance on the metric's scale (`+0.4`); a slope per minute as is.
pub fn effect(
    is_rate: bool,
    limit: Option<LimitKind>,
    ratio: Option<f64>,
    difference: Option<f64>,
) -> String {
    let difference = difference.filter(|d| d.is_finite());
    let ratio = ratio.filter(|r| r.is_finite());
    match (is_rate, limit, ratio, difference) {
        (true, _, _, Some(d)) => percentage_points(d),
        (_, Some(LimitKind::Threshold | LimitKind::MaxSlopePerMinute), _, Some(d)) => signed(d),
        (_, _, Some(r), _) => percent_change(r),
        (_, _, None, Some(d)) => signed(d),
        (_, _, None, None) => "-".to_string(),
    }
}

/// A check's limit as people read it: `tolerance 1 pp` (an error rate's), `tolerance 10%` (a
/// relative check's), `threshold 0.5%` (a rate), `threshold 0.25`, `max slope 2/min`.
pub fn limit(is_rate: bool, kind: LimitKind, value: f64) -> String {
    match (kind, is_rate) {
        (LimitKind::Tolerance, true) => format!("tolerance {} pp", short(value * 100.0)),
        (LimitKind::Tolerance, false) => format!("tolerance {}%", short(value * 100.0)),
        (LimitKind::Threshold, true) => format!("threshold {}", rate(value)),
        (LimitKind::Threshold, false) => format!("threshold {}", short(value)),
        (LimitKind::MaxSlopePerMinute, _) => format!("max slope {}/min", short(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_keep_their_sign() {
        let cases = [
            (0.276_836_439_748_828_9, "0.28"),
            (12.5, "12.5"),
            (55.0, "55"),
            (1840.4, "1840"),
            (0.003_14, "0.0031"),
            (0.012_3, "0.012"),
            (2.5e-7, "2.50e-7"),
            (-0.0, "0"),
            (f64::NAN, "-"),
        ];
        for (x, want) in cases {
            assert_eq!(short(x), want, "{x}");
        }
        assert_eq!(signed(0.4), "+0.4");
        assert_eq!(signed(-2.0), "-2");
        assert_eq!(signed(0.0), "0");
    }

    #[test]
    fn an_error_rate_effect_is_in_percentage_points_like_its_tolerance() {
        // The example: 0.0027683643974882885 of rate is 0.28 percentage points.
        let e = effect(
            true,
            Some(LimitKind::Tolerance),
            Some(1.55),
            Some(0.002_768_364_397_488_288_5),
        );
        assert_eq!(e, "+0.28 pp");
        assert_eq!(limit(true, LimitKind::Tolerance, 0.01), "tolerance 1 pp");
        // No ratio (a baseline without errors) reads the same.
        assert_eq!(
            effect(true, Some(LimitKind::Tolerance), None, Some(0.001)),
            "+0.1 pp"
        );
        assert_eq!(limit(true, LimitKind::Threshold, 0.005), "threshold 0.5%");
    }

    #[test]
    fn other_effects_are_in_the_unit_of_their_limit() {
        assert_eq!(
            effect(false, Some(LimitKind::Tolerance), Some(1.125), Some(0.01)),
            "+12.5%"
        );
        assert_eq!(limit(false, LimitKind::Tolerance, 0.1), "tolerance 10%");
        assert_eq!(
            effect(false, Some(LimitKind::Threshold), Some(1.8), Some(0.4)),
            "+0.4"
        );
        assert_eq!(limit(false, LimitKind::Threshold, 0.5), "threshold 0.5");
        assert_eq!(
            effect(false, Some(LimitKind::MaxSlopePerMinute), None, Some(-1.5)),
            "-1.5"
        );
        assert_eq!(effect(false, None, None, None), "-");
        assert_eq!(
            effect(false, None, Some(f64::NAN), Some(f64::INFINITY)),
            "-"
        );
    }
}
