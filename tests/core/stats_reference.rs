//! Checks every case of the SciPy/statsmodels/NumPy reference vectors against `canaryd::stats`.
//!
//! The vectors live in `tests/data/stats-reference.json` (or the file named by the environment
//! variable `CANARYD_STATS_REFERENCE`). Agreement asked for: |got - expected| <= max(1e-7·|expected|,
//! 1e-12); the strings `inf`, `-inf` and `nan` must match exactly. Every mismatch is collected and
//! reported at once; a panic inside one case is reported as that case's mismatch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use canaryd::stats::{self, Alternative, Counts, MwMethod};
use serde_json::{Value, json};

// SciPy ports no check uses yet, kept out of the daemon but checked here against the vectors.
#[path = "../stats_reference/ks.rs"]
mod ks;
#[path = "../stats_reference/welch.rs"]
mod welch;

use ks::KsMethod;

#[derive(Debug)]
struct Mismatch {
    index: usize,
    test: String,
    field: String,
    expected: String,
    got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "case {} ({}): {}: expected {}, got {}",
            self.index, self.test, self.field, self.expected, self.got
        )
    }
}

fn reference_path() -> PathBuf {
    match std::env::var_os("CANARYD_STATS_REFERENCE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/stats-reference.json"),
    }
}

fn load_cases() -> Vec<Value> {
    let path = reference_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    doc["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no `cases` array", path.display()))
        .clone()
}

// Input accessors: a malformed case panics, which the checker reports as that case's mismatch.

fn floats(case: &Value, key: &str) -> Vec<f64> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not a list"))
        .iter()
        .map(|v| {
            v.as_f64()
                .unwrap_or_else(|| panic!("`{key}` holds a non-number {v}"))
        })
        .collect()
}

fn float(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number"))
}

fn text<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string"))
}

fn flag(case: &Value, key: &str) -> bool {
    case[key]
        .as_bool()
        .unwrap_or_else(|| panic!("`{key}` is not a boolean"))
}

fn alternative(case: &Value) -> Alternative {
    match text(case, "alternative") {
        "two-sided" => Alternative::TwoSided,
        "less" => Alternative::Less,
        "greater" => Alternative::Greater,
        other => panic!("unknown alternative `{other}`"),
    }
}

fn counts(case: &Value, key: &str) -> Counts {
    let c = &case[key];
    let get = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("`{key}.{k}` is not a count"))
    };
    Counts {
        errors: get("errors"),
        total: get("total"),
    }
}

fn table(case: &Value) -> [[u64; 2]; 2] {
    let cell = |r: usize, c: usize| {
        case["table"][r][c]
            .as_u64()
            .unwrap_or_else(|| panic!("`table[{r}][{c}]` is not a count"))
    };
    [[cell(0, 0), cell(0, 1)], [cell(1, 0), cell(1, 1)]]
}

/// Runs one case, returning the (field, value) pairs it computed.
fn compute(case: &Value) -> Result<Vec<(String, f64)>, String> {
    let f = |name: &str, v: f64| (name.to_string(), v);
    let err = |e: stats::StatsError| format!("returned an error: {e}");
    let test = text(case, "test");
    Ok(match test {
        "mann_whitney_u" => {
            let method = match text(case, "method") {
                "exact" => MwMethod::Exact,
                "asymptotic" => MwMethod::Asymptotic,
                "auto" => MwMethod::Auto,
                other => panic!("unknown method `{other}`"),
            };
            let r = stats::mann_whitney_u(
                &floats(case, "x"),
                &floats(case, "y"),
                alternative(case),
                method,
                flag(case, "continuity"),
            )
            .map_err(err)?;
            vec![f("u", r.u), f("p_value", r.p_value)]
        }
        "hodges_lehmann" => {
            let shift =
                stats::hodges_lehmann(&floats(case, "x"), &floats(case, "y")).map_err(err)?;
            vec![f("shift", shift)]
        }
        "welch_t" => {
            let r = welch::welch_t(&floats(case, "x"), &floats(case, "y"), alternative(case))
                .map_err(err)?;
            vec![f("t", r.t), f("df", r.df), f("p_value", r.p_value)]
        }
        "ks_2samp" => {
            let method = match text(case, "method") {
                "exact" => KsMethod::Exact,
                "asymp" => KsMethod::Asymptotic,
                "auto" => KsMethod::Auto,
                other => panic!("unknown method `{other}`"),
            };
            let r = ks::ks_2samp(
                &floats(case, "x"),
                &floats(case, "y"),
                alternative(case),
                method,
            )
            .map_err(err)?;
            vec![f("d", r.d), f("p_value", r.p_value)]
        }
        "fisher_exact" => {
            let r = stats::fisher_exact(table(case), alternative(case)).map_err(err)?;
            vec![f("odds_ratio", r.odds_ratio), f("p_value", r.p_value)]
        }
        "two_proportion_z" => {
            let r = stats::two_proportion_z(
                counts(case, "canary"),
                counts(case, "baseline"),
                alternative(case),
                flag(case, "pooled"),
            )
            .map_err(err)?;
            vec![f("z", r.z), f("p_value", r.p_value)]
        }
        "theil_sen" => {
            let r = stats::theil_sen(
                &floats(case, "t"),
                &floats(case, "y"),
                float(case, "confidence"),
            )
            .map_err(err)?;
            vec![
                f("slope", r.slope),
                f("intercept", r.intercept),
                f("low", r.low),
                f("high", r.high),
            ]
        }
        "mann_kendall" => {
            let r = stats::mann_kendall(&floats(case, "t"), &floats(case, "y"), alternative(case))
                .map_err(err)?;
            vec![f("tau_b", r.tau_b), f("p_value", r.p_value)]
        }
        "quantile" => {
            let values = stats::quantiles(&floats(case, "x"), &floats(case, "q")).map_err(err)?;
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| (format!("values[{i}]"), v))
                .collect()
        }
        other => return Err(format!("unknown test name `{other}`")),
    })
}

/// Whether `got` agrees with the reference value `expected` (a number or `inf`/`-inf`/`nan`).
fn agrees(expected: &Value, got: f64) -> bool {
    match expected {
        Value::String(s) => match s.as_str() {
            "inf" => got == f64::INFINITY,
            "-inf" => got == f64::NEG_INFINITY,
            "nan" => got.is_nan(),
            _ => false,
        },
        Value::Number(n) => match n.as_f64() {
            Some(e) => got.is_finite() && (got - e).abs() <= (1e-7 * e.abs()).max(1e-12),
            None => false,
        },
        _ => false,
    }
}

/// The expected (field, value) pairs of a case, with `values` lists flattened to `values[i]`.
fn expected_fields(case: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(map) = case["expected"].as_object() {
        for (k, v) in map {
            match v {
                Value::Array(items) => out.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (format!("{k}[{i}]"), x.clone())),
                ),
                _ => out.push((k.clone(), v.clone())),
            }
        }
    }
    out
}

/// Checks every case; returns the number checked and every mismatch.
fn check_cases(cases: &[Value]) -> (usize, Vec<Mismatch>) {
    let mut mismatches = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let test = case["test"]
            .as_str()
            .unwrap_or("<missing test name>")
            .to_string();
        let mut miss = |field: &str, expected: String, got: String| {
            mismatches.push(Mismatch {
                index,
                test: test.clone(),
                field: field.to_string(),
                expected,
                got,
            })
        };
        let expected = expected_fields(case);
        if expected.is_empty() {
            miss(
                "expected",
                "a non-empty `expected` object".into(),
                case["expected"].to_string(),
            );
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| compute(case)));
        let got = match outcome {
            Ok(Ok(got)) => got,
            Ok(Err(message)) => {
                miss("<call>", "a result".into(), message);
                continue;
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                miss("<call>", "a result".into(), format!("panicked: {message}"));
                continue;
            }
        };
        for (field, exp) in &expected {
            match got.iter().find(|(name, _)| name == field) {
                Some(&(_, value)) if agrees(exp, value) => {}
                Some(&(_, value)) => miss(field, exp.to_string(), format!("{value:?}")),
                None => miss(field, exp.to_string(), "no such output".into()),
            }
        }
    }
    (cases.len(), mismatches)
}

#[test]
fn every_reference_case_agrees_with_scipy() {
    let cases = load_cases();
    let (checked, mismatches) = check_cases(&cases);
    println!("{checked} cases checked");
    let names = [
        "mann_whitney_u",
        "hodges_lehmann",
        "welch_t",
        "ks_2samp",
        "fisher_exact",
        "two_proportion_z",
        "theil_sen",
        "mann_kendall",
        "quantile",
    ];
    for name in names {
        let n = cases.iter().filter(|c| c["test"] == name).count();
        let bad = mismatches
            .iter()
            .filter(|m| m.test == name)
            .map(|m| m.index)
            .collect::<std::collections::BTreeSet<_>>();
        println!("{name}: {} of {n} cases agree", n - bad.len());
    }
    assert!(checked > 0, "no cases in {}", reference_path().display());
    if !mismatches.is_empty() {
        let listing: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
        panic!(
            "{} mismatches in {checked} cases:\n{}",
            mismatches.len(),
            listing.join("\n")
        );
    }
}

#[test]
fn the_checker_reports_wrong_values_unknown_tests_and_panics() {
    let good = json!({
        "test": "quantile", "x": [1.0, 2.0, 3.0, 4.0], "q": [0.5],
        "expected": {"values": [2.5]}
    });
    let wrong = json!({
        "test": "mann_whitney_u", "x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0],
        "alternative": "two-sided", "method": "exact", "continuity": true,
        "expected": {"u": 0.0, "p_value": 0.2}
    });
    let unknown = json!({"test": "chi_square", "expected": {"p_value": 0.5}});
    let malformed = json!({
        "test": "welch_t", "x": "oops", "y": [1.0, 2.0], "alternative": "less",
        "expected": {"t": 0.0}
    });
    let nan_expected = json!({
        "test": "fisher_exact", "table": [[1, 99], [0, 20]], "alternative": "greater",
        "expected": {"odds_ratio": "nan", "p_value": 0.8333333333333334}
    });
    let (checked, mismatches) = check_cases(&[good, wrong, unknown, malformed, nan_expected]);
    assert_eq!(checked, 5);
    let seen: Vec<(usize, &str)> = mismatches
        .iter()
        .map(|m| (m.index, m.field.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "p_value"),
            (2, "<call>"),
            (3, "<call>"),
            (4, "odds_ratio")
        ],
        "{mismatches:#?}"
    );
    assert!(mismatches[0].to_string().contains("expected 0.2, got 0.1"));
    assert!(mismatches[1].got.contains("unknown test name `chi_square`"));
    assert!(mismatches[2].got.contains("panicked"));
}

#[test]
fn tolerance_is_relative_or_absolute_whichever_is_looser() {
    assert!(agrees(&json!(1.0), 1.0 + 0.9e-7));
    assert!(!agrees(&json!(1.0), 1.0 + 1.1e-7));
    assert!(agrees(&json!(0.0), 0.9e-12));
    assert!(!agrees(&json!(0.0), 1.1e-12));
    assert!(agrees(&json!("inf"), f64::INFINITY));
    assert!(!agrees(&json!("inf"), f64::MAX));
    assert!(!agrees(&json!(1.0), f64::NAN));
}
