//! Every input the fuzz targets (`fuzz/`, see BENCHMARKS.md "Fuzzing") found wrong, kept as a
//! test on stable, each asserting the right behaviour (a clear error naming where, an
//! inconclusive verdict, readers that agree) and then the target's own invariants, which this
//! file shares with the targets (`fuzz/src/invariants.rs`). The seeds the targets start from
//! (the repo's real rule files, configs and captured Prometheus answers) pass them too.

#[allow(dead_code)]
#[path = "../fuzz/src/invariants.rs"]
mod invariants;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_seeds_of_the_rule_target_hold_its_invariants() {
    let mut seen = 0;
    for dir in ["rules", "src/cli/demo_rules", "tests/fixtures/rules/good"] {
        for file in files_in(dir, "toml") {
            let rule = invariants::check_rule_text(&text(&file));
            assert!(rule.is_ok(), "{}: {:?}", file.display(), rule.err());
            seen += 1;
        }
    }
    for file in files_in("tests/fixtures/rules/bad", "toml") {
        assert!(
            invariants::check_rule_text(&text(&file)).is_err(),
            "{}",
            file.display()
        );
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} rule files found");
}

#[test]
fn the_seeds_of_the_config_target_hold_its_invariants() {
    let shipped = text(&repo("config/canaryd.toml"));
    invariants::check_config_text(&shipped, &HashMap::new()).expect("the shipped config is valid");
    let unknown = text(&repo("tests/fixtures/daemon/unknown-key.toml"));
    assert!(invariants::check_config_text(&unknown, &HashMap::new()).is_err());
}

#[test]
fn the_seeds_of_the_answer_target_hold_its_invariants() {
    let files = files_in("fuzz/seeds/prom_answer", "json");
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let body = std::fs::read(&file).expect("a seed");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let read = invariants::check_prom_answer(200, &body);
        let refused = ["error-", "instant-string", "native-histogram"];
        assert_eq!(
            read.is_err(),
            refused
                .iter()
                .any(|r| name.starts_with(r) || name.contains(r)),
            "{name}: {read:?}"
        );
        invariants::check_prom_answer(503, &body).expect_err("a 503 is an error");
    }
}

// ---- judge_numbers ----------------------------------------------------------------------

use canaryd::judge::{
    Aggregate, AnalysisOutcome, CheckKind, CheckSpec, Direction, Point, ScoredCheck, Scoring,
    SideData, Verdict, judge_check, score_analysis,
};

fn spec(kind: CheckKind, confidence: f64, min_samples: usize) -> CheckSpec {
    CheckSpec {
        name: "fuzz".into(),
        kind,
        direction: Direction::HigherIsWorse,
        confidence,
        min_samples,
    }
}

/// Values a minute apart, as a range query gives them.
fn values(v: &[f64]) -> SideData {
    SideData::Values(
        v.iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t: 1_700_000_000.0 + 60.0 * i as f64,
                v,
            })
            .collect(),
    )
}

/// judge_numbers crash-0ae34809 (and 11 more like it): with `pass_score = 0` an analysis whose
/// every check is inconclusive (no data at all) scored 0 >= 0 and passed: a rollout would
/// advance on no evidence. A pass needs a check that passed.
#[test]
fn an_analysis_with_no_passing_check_never_passes_even_at_pass_score_zero() {
    let no_data = spec(CheckKind::Relative { tolerance: 0.1 }, 0.99, 10);
    let result = judge_check(&no_data, &values(&[]), &values(&[]));
    assert!(matches!(result.verdict, Verdict::Inconclusive { .. }));
    let scoring = Scoring {
        group_weights: [("g0".to_string(), 1.0)].into(),
        pass_score: 0.0,
        marginal_score: 0.0,
    };
    let scored = [ScoredCheck::new(&result, "g0", false)];
    let score = score_analysis(&scored, &scoring);
    assert_ne!(score.outcome, AnalysisOutcome::Pass, "{}", score.reason);
    // A check that passes still passes the analysis at that setting.
    let fine = judge_check(
        &spec(
            CheckKind::Absolute {
                threshold: 10.0,
                aggregate: Aggregate::Max,
            },
            0.99,
            1,
        ),
        &values(&[]),
        &values(&[1.0, 2.0]),
    );
    assert_eq!(fine.verdict, Verdict::Pass);
    let scored = [ScoredCheck::new(&fine, "g0", false)];
    assert_eq!(
        score_analysis(&scored, &scoring).outcome,
        AnalysisOutcome::Pass
    );
    // And the fuzz target's invariants hold on the reproducer as a whole.
    invariants::check_analysis(
        &[(no_data, values(&[]), values(&[]))],
        &[("g0".to_string(), false)],
        &scoring,
    );
}

/// judge_numbers crash-9fec353e: an absolute check against the threshold 5e-324 (finite, the
/// smallest double) failed with the effect's ratio median / threshold = 30 / 5e-324 = inf in
/// its evidence. The verdict rests on a non-finite number; the ratio must be left out (as for
/// a zero reference) or the check be inconclusive. In h-judge's area (issue 16 point 2).
#[test]
#[ignore = "fixed by h-judge (issue 16 point 2: non-finite intermediates), not in this branch"]
fn an_absolute_check_against_a_tiny_threshold_has_no_infinite_ratio() {
    let tiny = spec(
        CheckKind::Absolute {
            threshold: 5e-324,
            aggregate: Aggregate::Median,
        },
        0.5,
        1,
    );
    let (baseline, canary) = (values(&[]), values(&[60.0, 0.0]));
    let result = judge_check(&tiny, &baseline, &canary);
    if let Some(effect) = result.evidence.effect {
        assert!(effect.ratio.is_none_or(f64::is_finite), "{effect:?}");
    }
    invariants::assert_result_sound(&tiny, &baseline, &canary, &result);
}

// ---- prom_answer ------------------------------------------------------------------------

use canaryd::source::{SourceError, answer};

/// A matrix answer with one series whose first point's time is written `time`.
fn matrix_with_time(time: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[[{time},"NaN"],[1796405101,"1"]]}}]}}}}"#
    )
}

/// prom_answer crash-eba8ad66: the byte-level reader took `0536` (a leading zero, not JSON) for
/// the time 536, while the JSON reader refuses the answer: the daemon read, as data, an answer
/// it would call malformed. Every number the JSON grammar refuses, or that overflows, is now
/// refused by both, as a malformed answer naming the problem.
#[test]
fn numbers_that_are_not_json_are_refused_by_both_readers() {
    for time in [
        "0536", "+1", ".5", "5.", "1.e3", "1e", "-", "--1", "1e400", "-1e400", "00",
    ] {
        let body = matrix_with_time(time);
        assert!(
            answer::read_fast(body.as_bytes()).is_none(),
            "the fast reader read the time {time}"
        );
        match invariants::check_prom_answer(200, body.as_bytes()) {
            Err(SourceError::Malformed { detail, .. }) => {
                assert!(detail.contains("not JSON"), "{time}: {detail}")
            }
            other => panic!("{time}: {other:?}"),
        }
    }
    // The JSON numbers still read, the same both ways.
    for (time, t) in [
        ("0", 0.0),
        ("-0.5", -0.5),
        ("1.5e3", 1500.0),
        ("17E-1", 1.7),
        ("1e+2", 100.0),
    ] {
        let body = matrix_with_time(time);
        let fast = answer::read_fast(body.as_bytes()).expect("the fast reader reads it");
        assert_eq!(fast[0].points[0].t, t);
        invariants::check_prom_answer(200, body.as_bytes()).expect("read");
    }
    // An overflowing number where the reader skips a value is refused too.
    let body = r#"{"status":"success","infos":[1e999],"data":{"resultType":"matrix","result":[]}}"#;
    assert!(answer::read_fast(body.as_bytes()).is_none());
    assert!(invariants::check_prom_answer(200, body.as_bytes()).is_err());
}

/// A series whose `metric` key comes twice: the fast reader merged both label sets while the
/// JSON reader (like Prometheus's own client) keeps the last one, so the two readers gave the
/// same answer different labels. Both keep the last now.
#[test]
fn a_repeated_metric_key_keeps_the_last_labels_in_both_readers() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"metric":{"b":"2"},"values":[[1,"1"]]}]}}"#;
    let series = invariants::check_prom_answer(200, body.as_bytes()).expect("read");
    assert_eq!(series[0].labels.len(), 1, "{series:?}");
    assert_eq!(series[0].labels["b"], "2");
}

/// Error messages quote what they were given in bounded excerpts: a `status` that is a huge
/// value, Prometheus's own `error` text and a label name were quoted whole, into logs, the
/// store and notifications.
#[test]
fn error_messages_about_an_answer_are_bounded() {
    let big = "x".repeat(100_000);
    for body in [
        format!(r#"{{"status":["{big}"],"data":{{}}}}"#),
        format!(r#"{{"status":"error","errorType":"bad_data","error":"{big}"}}"#),
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"{big}":1}},"values":[]}}]}}}}"#
        ),
        format!(r#"{{"status":"success","data":{{"resultType":"{big}","result":[]}}}}"#),
    ] {
        let err = invariants::check_prom_answer(200, body.as_bytes()).expect_err("refused");
        assert!(err.to_string().contains("xxx"), "{err}");
    }
}
