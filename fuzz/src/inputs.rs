//! How the fuzz targets turn bytes into checks, data and answers: small palettes of the values
//! that matter (0, tiny, huge, NaN, ±inf, the defaults) mixed with arbitrary ones.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use canaryd::judge::{
    Aggregate, CheckKind, CheckSpec, CountPoint, Direction, Point, Scoring, SideData, ThresholdTest,
};

/// An HTTP status for a byte from 1 to 8.
pub fn status_from_byte(b: u8) -> u16 {
    [200, 204, 400, 404, 422, 429, 500, 503][usize::from(b.wrapping_sub(1)) % 8]
}

/// Numbers that break arithmetic, and ordinary ones.
const SPECIAL: [f64; 16] = [
    0.0,
    -0.0,
    1.0,
    0.1,
    0.5,
    0.99,
    100.0,
    1e-300,
    5e-324,
    1e308,
    f64::MAX,
    -1e308,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    60.0,
];

/// A number: one of [`SPECIAL`], a small integer, or any `f64` at all.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Num {
    Special(u8),
    Small(i16),
    Any(f64),
}

impl Num {
    pub fn get(self) -> f64 {
        match self {
            Num::Special(i) => SPECIAL[usize::from(i) % SPECIAL.len()],
            Num::Small(n) => f64::from(n),
            Num::Any(x) => x,
        }
    }
}

/// A check's settings for `canaryd judge` from two bytes: kind and direction from the first,
/// settings from the second (mostly sane, sometimes not).
/// The observed comparison or the statistical test, from one byte's lowest bit.
fn threshold_test(x: u8) -> ThresholdTest {
    if x % 2 == 0 {
        ThresholdTest::Observed
    } else {
        ThresholdTest::Statistical
    }
}

pub fn spec_from_bytes(a: u8, b: u8) -> CheckSpec {
    let setting =
        |i: u8| [0.1, 0.0, 1.0, 0.001, 0.5, 1e308, f64::NAN, f64::INFINITY][usize::from(i % 8)];
    let kind = match a % 5 {
        0 => CheckKind::Relative {
            tolerance: setting(b),
        },
        1 => CheckKind::Absolute {
            threshold: setting(b),
            aggregate: [
                Aggregate::Mean,
                Aggregate::Median,
                Aggregate::Max,
                Aggregate::Min,
                Aggregate::Last,
                Aggregate::Quantile(0.99),
            ][usize::from(b / 8 % 6)],
            test: threshold_test(a / 75),
        },
        2 => CheckKind::ErrorRate {
            tolerance: setting(b),
        },
        3 => CheckKind::ErrorRateAbsolute {
            threshold: setting(b).min(1.0),
            test: threshold_test(a / 75),
        },
        _ => CheckKind::Trend {
            max_slope_per_minute: setting(b),
        },
    };
    CheckSpec {
        name: "fuzz".into(),
        kind,
        direction: direction(a / 5),
        confidence: [0.99, 0.95, 0.5, 0.999_999][usize::from(b / 64)],
        min_samples: [0, 1, 3, 10, 100][usize::from(a / 15 % 5)],
    }
}

fn direction(i: u8) -> Direction {
    [
        Direction::HigherIsWorse,
        Direction::LowerIsWorse,
        Direction::Either,
    ][usize::from(i % 3)]
}

/// One check and its two sides' data.
#[derive(Debug, Clone, Arbitrary)]
pub struct Check {
    kind: u8,
    direction: u8,
    setting: Num,
    aggregate: u8,
    quantile: Num,
    confidence: Num,
    min_samples: u8,
    baseline: Side,
    canary: Side,
    group: u8,
    critical: bool,
}

/// One side's data: values or counts, with times regular (as a range query gives them, so the
/// sides pair), or arbitrary.
#[derive(Debug, Clone, Arbitrary)]
pub enum Side {
    Regular(Vec<Num>),
    Timed(Vec<(Num, Num)>),
    Counts(Vec<(Num, Num)>),
    CountsTimed(Vec<(Num, Num, Num)>),
}

impl Side {
    fn build(&self) -> SideData {
        let t = |i: usize| 1_700_000_000.0 + 60.0 * i as f64;
        match self {
            Side::Regular(v) => SideData::Values(
                v.iter()
                    .enumerate()
                    .map(|(i, v)| Point {
                        t: t(i),
                        v: v.get(),
                    })
                    .collect(),
            ),
            Side::Timed(v) => SideData::Values(
                v.iter()
                    .map(|(t, v)| Point {
                        t: t.get(),
                        v: v.get(),
                    })
                    .collect(),
            ),
            Side::Counts(v) => SideData::Counts(
                v.iter()
                    .enumerate()
                    .map(|(i, (e, n))| CountPoint {
                        t: t(i),
                        errors: e.get(),
                        total: n.get(),
                    })
                    .collect(),
            ),
            Side::CountsTimed(v) => SideData::Counts(
                v.iter()
                    .map(|(t, e, n)| CountPoint {
                        t: t.get(),
                        errors: e.get(),
                        total: n.get(),
                    })
                    .collect(),
            ),
        }
    }
}

impl Check {
    fn spec(&self, index: usize) -> CheckSpec {
        let setting = self.setting.get();
        let kind = match self.kind % 5 {
            0 => CheckKind::Relative { tolerance: setting },
            1 => CheckKind::Absolute {
                threshold: setting,
                aggregate: match self.aggregate % 6 {
                    0 => Aggregate::Mean,
                    1 => Aggregate::Median,
                    2 => Aggregate::Min,
                    3 => Aggregate::Max,
                    4 => Aggregate::Last,
                    _ => Aggregate::Quantile(self.quantile.get()),
                },
                test: threshold_test(self.aggregate / 6),
            },
            2 => CheckKind::ErrorRate { tolerance: setting },
            3 => CheckKind::ErrorRateAbsolute {
                threshold: setting,
                test: threshold_test(self.aggregate / 6),
            },
            _ => CheckKind::Trend {
                max_slope_per_minute: setting,
            },
        };
        CheckSpec {
            name: format!("check-{index}").into(),
            kind,
            direction: direction(self.direction),
            confidence: self.confidence.get(),
            min_samples: usize::from(self.min_samples),
        }
    }
}

/// Up to four checks judged as one analysis, and its scoring.
#[derive(Debug, Clone, Arbitrary)]
pub struct Analysis {
    checks: Vec<Check>,
    weights: [Num; 3],
    pass: Num,
    marginal: Num,
}

/// Checks with their data, (group, critical) per check, and the scoring.
pub type Built = (
    Vec<(CheckSpec, SideData, SideData)>,
    Vec<(String, bool)>,
    Scoring,
);

impl Analysis {
    pub fn build(&self) -> Built {
        let checks: Vec<&Check> = self.checks.iter().take(4).collect();
        let judged = checks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.spec(i), c.baseline.build(), c.canary.build()))
            .collect();
        let mut groups: Vec<(String, bool)> = checks
            .iter()
            .map(|c| (format!("g{}", c.group % 3), c.critical))
            .collect();
        if groups.is_empty() {
            groups.push(("g0".into(), false));
        }
        let group_weights: BTreeMap<String, f64> = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("g{i}"), w.get()))
            .collect();
        let scoring = Scoring {
            group_weights,
            pass_score: self.pass.get(),
            marginal_score: self.marginal.get(),
        };
        (judged, groups, scoring)
    }
}

/// A TOML value for a rule or config key: the kinds of values that test bounds.
#[derive(Debug, Clone, Arbitrary)]
pub enum TomlValue {
    Int(i64),
    Float(Num),
    /// A duration: a number and a unit (`99999999d`, `0s`, `1ms`).
    Duration(u64, u8),
    /// Two units (`1h30m`), possibly out of order.
    Duration2(u32, u8, u32, u8),
    Str(String),
    Bool(bool),
    Array(Vec<i16>),
}

impl TomlValue {
    /// The value as TOML text.
    pub fn render(&self) -> String {
        const UNITS: [&str; 6] = ["ms", "s", "m", "h", "d", "w"];
        let unit = |u: u8| UNITS[usize::from(u) % UNITS.len()];
        match self {
            TomlValue::Int(n) => n.to_string(),
            TomlValue::Float(x) => {
                let x = x.get();
                if x.is_nan() {
                    "nan".into()
                } else if x.is_infinite() {
                    if x > 0.0 { "inf".into() } else { "-inf".into() }
                } else {
                    format!("{x:?}")
                }
            }
            TomlValue::Duration(n, u) => format!("\"{n}{}\"", unit(*u)),
            TomlValue::Duration2(a, u, b, v) => format!("\"{a}{}{b}{}\"", unit(*u), unit(*v)),
            TomlValue::Str(s) => format!("{s:?}"),
            TomlValue::Bool(b) => b.to_string(),
            TomlValue::Array(v) => format!("{v:?}"),
        }
    }
}
