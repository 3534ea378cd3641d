//! Checks `stats::paired_dispersion` against statsmodels (`tests/data/paired-dispersion-
//! reference.json`, written by `tests/data/gen_paired_dispersion.py`; its `meta.call` names the
//! GLM behind every case). Agreement asked for: |got - expected| <= max(1e-7·|expected|,
//! 1e-12); the number of steps exactly. Every mismatch is collected and reported at once.

use canaryd::stats::{self, Counts};
use serde_json::Value;

fn whole(case: &Value, key: &str) -> Vec<u64> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not a list"))
        .iter()
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("`{key}` holds {v}")))
        .collect()
}

#[test]
fn paired_dispersion_matches_statsmodels() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/paired-dispersion-reference.json"
    );
    let text = std::fs::read_to_string(path).expect("the reference file");
    let reference: Value = serde_json::from_str(&text).expect("reference JSON");
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 7, "{} cases", cases.len());
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let side = |errors: &str, totals: &str| -> Vec<Counts> {
            whole(case, errors)
                .into_iter()
                .zip(whole(case, totals))
                .map(|(errors, total)| Counts { errors, total })
                .collect()
        };
        let steps: Vec<(Counts, Counts)> = side("canary_errors", "canary_totals")
            .into_iter()
            .zip(side("baseline_errors", "baseline_totals"))
            .collect();
        let got = match stats::paired_dispersion(&steps) {
            Ok(d) => d,
            Err(e) => {
                mismatches.push(format!("case {i}: {e}"));
                continue;
            }
        };
        let expected = &case["expected"];
        if expected["steps"].as_u64() != Some(got.steps as u64) {
            mismatches.push(format!(
                "case {i}: steps {} vs {}",
                got.steps, expected["steps"]
            ));
        }
        for (key, value) in [
            ("log_ratio", got.log_ratio),
            ("pearson_chi2", got.pearson_chi2),
            ("scale", got.scale),
            ("phi", got.phi),
        ] {
            let want = expected[key].as_f64().expect(key);
            if (value - want).abs() > (1e-7 * want.abs()).max(1e-12) {
                mismatches.push(format!("case {i}: {key} {value} vs statsmodels {want}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
