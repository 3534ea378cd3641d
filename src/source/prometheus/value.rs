//! A Prometheus sample value as the HTTP API writes it, a string: a decimal, `NaN`, `+Inf` or
//! `-Inf` (NaN and ±inf stay NaN and ±inf; judging them is the judge's business). Both readings
//! of an answer, the fast `matrix` one and the tree one in `parse`, read values with it.

/// A Prometheus sample value: a decimal, `NaN`, `+Inf` or `-Inf`.
pub(super) fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if text
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_like_prometheus_writes_them() {
        assert_eq!(parse_value("1.5"), Some(1.5));
        assert_eq!(parse_value("-2e3"), Some(-2000.0));
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("abc"), None);
        assert_eq!(parse_value("infinity"), None);
        assert_eq!(parse_value(""), None);
    }
}
