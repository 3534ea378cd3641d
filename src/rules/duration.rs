//! Human durations in rule files and the daemon config: "30s", "5m", "1h30m", "2d", "250ms".
//!
//! This module owns parsing them (at most a year: [`MAX`]) and writing them back in the same
//! form (which is also the form Prometheus range selectors accept, so a check's `{{window}}`
//! renders with [`format()`]).

use std::time::Duration;
use thiserror::Error;

/// Why a duration string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` has no unit")]
    MissingUnit(String),
    #[error("`{0}` is not a duration")]
    Malformed(String),
    #[error("unknown unit `{unit}` in `{text}`")]
    UnknownUnit { text: String, unit: String },
    #[error("units in `{0}` must go from largest to smallest, each once")]
    UnitOrder(String),
    #[error("`{0}` is longer than {MAX_TEXT}, the longest duration canaryd accepts")]
    Overflow(String),
}

/// The longest duration accepted anywhere (rule files and the daemon config): a year. Every
/// time computed from one (`now - window`, a deadline, a timer) then stays far inside the range
/// of chrono's dates and tokio's timers, which panic beyond theirs.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);
const MAX_TEXT: &str = "365d";

impl DurationError {
    /// What to write instead.
    pub fn hint(&self) -> &'static str {
        match self {
            DurationError::Overflow(_) => "durations are at most 365d (a year)",
            _ => {
                "write a number and a unit, largest unit first: `30s`, `5m`, `1h30m`, `2d` (units: ms, s, m, h, d)"
            }
        }
    }
}

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parse "30s", "5m", "1h30m", "2d", "1500ms". Zero ("0s") is allowed; a bare number is not;
/// longer than [`MAX`] is [`DurationError::Overflow`].
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Malformed(s.to_string()));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(if rest.is_empty() {
                DurationError::MissingUnit(s.to_string())
            } else {
                DurationError::Malformed(s.to_string())
            });
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let rank = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
            DurationError::UnknownUnit {
                text: s.to_string(),
                unit: unit.to_string(),
            }
        })?;
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(DurationError::UnitOrder(s.to_string()));
        }
        last_rank = Some(rank);
        total_ms = number
            .checked_mul(UNITS[rank].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| u128::from(*ms) <= MAX.as_millis())
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Write a duration the way [`parse`] reads it ("1h30m", "0s"); sub-millisecond parts are dropped.
pub fn format(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// Serde glue for durations written as text in config files (`timeout = "10s"`), shared by
/// every config struct that has one: `#[serde(with = "crate::rules::duration::serde_text")]`.
pub mod serde_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!("bad duration `{text}`: {e}; {}", e.hint()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_operators_write() {
        let cases = [
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5_400),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
            ("0s", 0),
            (" 10m ", 600),
        ];
        for (text, secs) in cases {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("30"), Err(DurationError::MissingUnit("30".into())));
        assert!(matches!(parse("5 m"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("m"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("-5m"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("1.5h"), Err(DurationError::Malformed(_))));
        assert_eq!(
            parse("5min"),
            Err(DurationError::UnknownUnit {
                text: "5min".into(),
                unit: "min".into()
            })
        );
        assert!(matches!(parse("30m1h"), Err(DurationError::UnitOrder(_))));
        assert!(matches!(parse("5m5m"), Err(DurationError::UnitOrder(_))));
        assert!(matches!(
            parse("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        // A year is the most: `99999999d` used to pass and panic every analysis (`now - window`).
        assert_eq!(parse("365d"), Ok(MAX));
        assert_eq!(parse("364d23h59m59s1000ms"), Ok(MAX));
        for long in ["99999999d", "366d", "365d1ms", "8761h", "31536000001ms"] {
            let err = parse(long).unwrap_err();
            assert_eq!(err, DurationError::Overflow(long.into()));
            assert!(err.to_string().contains("365d"), "{err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "0s", "30s", "5m", "1h30m", "2d", "1d2h3m4s", "1s500ms", "250ms",
        ] {
            let d = parse(text).unwrap();
            assert_eq!(format(d), text);
            assert_eq!(parse(&format(d)), Ok(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
