//! The invariants the fuzz targets check, shared with the stable regression tests
//! (`tests/core/fuzz_regressions.rs` includes this file), so a reproducer is judged by the same
//! rules in `cargo test` as in `cargo fuzz`.
//!
//! Each `check_*` function runs one of canaryd's readers or judges on one input the way the
//! daemon or the CLI would, then panics (the fuzzer's way of reporting) when an invariant does
//! not hold: bad input must give a clear error saying where, never a panic; an accepted input
//! must be usable by the daemon (no later panic, no unbounded value); a verdict that is not
//! inconclusive rests only on finite numbers; the two Prometheus readers agree where both
//! read. They return what they found so that tests can assert more.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use canaryd::cli::judge::{JudgeError, json_report, judge_texts, table_report};
use canaryd::config::{Config, ConfigError};
use canaryd::judge::{
    AnalysisOutcome, AnalysisScore, CheckKind, CheckResult, CheckSpec, FamilyControl, SideData,
    SideSummary, Verdict, judge_analysis,
};
use canaryd::rules::{KnownNames, Problem, RolloutRule, Schedule, Side, parse_rule};
use canaryd::source::{Series, SourceError, answer};

/// The most points per series Prometheus answers in one range query (its
/// "exceeded maximum resolution of 11,000 points per timeseries").
pub const PROMETHEUS_POINT_LIMIT: u128 = 11_000;

/// Error messages quote at most this much of what they were given (plus their own words).
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// The instant the daemon's time arithmetic is checked at: a plausible "now", and later ones
/// (a daemon runs for years).
fn nows() -> [chrono::DateTime<chrono::Utc>; 2] {
    [
        chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time"),
        chrono::DateTime::from_timestamp(4_000_000_000, 0).expect("a valid time"),
    ]
}

/// A duration of a rule or config is usable: the daemon can subtract it from now (the start of
/// an analysis window) and add it to now (deadlines, next runs) without overflow.
fn assert_duration_usable(what: &str, d: Duration) {
    let delta = chrono::TimeDelta::from_std(d)
        .unwrap_or_else(|_| panic!("{what} = {d:?} was accepted but does not fit a time delta"));
    for now in nows() {
        assert!(
            now.checked_sub_signed(delta).is_some() && now.checked_add_signed(delta).is_some(),
            "{what} = {d:?} was accepted but now ± it overflows the calendar"
        );
    }
    assert!(
        tokio::time::Instant::now().checked_add(d).is_some(),
        "{what} = {d:?} was accepted but overflows a timer"
    );
}

/// Problems must say where: the file given, a line and column inside the text.
fn assert_problem_located(path: &Path, text: &str, p: &Problem) {
    assert_eq!(p.path, path, "a problem names another file: {p}");
    let loc = p
        .location
        .unwrap_or_else(|| panic!("a problem in a text has no line and column: {p}"));
    let lines = text.split('\n').count();
    assert!(
        loc.line >= 1 && loc.line <= lines && loc.column >= 1,
        "problem at {}:{} outside the text of {lines} lines: {p}",
        loc.line,
        loc.column
    );
    assert!(!p.message.trim().is_empty(), "a problem without a message");
    let shown = p.to_string();
    let prefix = format!("{}:{}:{}: error: ", path.display(), loc.line, loc.column);
    assert!(
        shown.starts_with(&prefix),
        "not file:line:col first: {shown}"
    );
}

/// The names a rule file may use: those of the shipped config, the demo and the test fixtures.
pub fn known_names() -> KnownNames {
    KnownNames::new(
        vec!["prometheus".to_string(), "sim".into()],
        vec!["builtin".into(), "file".into(), "webhook".into()],
        vec!["team-email".into(), "pager".into(), "team".into()],
    )
}

/// Parse and validate one rule file's text; every problem located, every accepted rule usable.
pub fn check_rule_text(text: &str) -> Result<RolloutRule, Vec<Problem>> {
    let path = Path::new("fuzz.toml");
    let parsed = parse_rule(path, text, &known_names());
    match &parsed {
        Ok(rule) => assert_rule_usable(rule),
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for p in problems {
                assert_problem_located(path, text, p);
            }
        }
    }
    parsed
}

/// What the daemon relies on in a validated rule.
pub fn assert_rule_usable(rule: &RolloutRule) {
    let plan = &rule.plan;
    assert!(!plan.stages.is_empty(), "a rule without stages");
    for pair in plan.stages.windows(2) {
        assert!(pair[0].weight < pair[1].weight, "weights not increasing");
    }
    for stage in &plan.stages {
        assert!(stage.weight <= 100, "weight {} over 100", stage.weight);
        assert_duration_usable("min_duration", stage.min_duration);
        if let Some(max) = stage.max_duration {
            assert_duration_usable("max_duration", max);
        }
    }
    assert_duration_usable("warmup", plan.warmup);
    if let Schedule::Every(every) = &rule.schedule {
        assert!(!every.is_zero(), "analyses every 0s");
        assert_duration_usable("every", *every);
    }
    for trigger in &plan.triggers {
        if let canaryd::rollout::Sustain::For(d) = trigger.sustain {
            assert_duration_usable("for", d);
        }
    }
    assert_eq!(plan.triggers.len(), rule.checks.len());
    for check in &rule.checks {
        let name = &check.spec.name;
        assert!(!check.step.is_zero(), "check `{name}`: step 0 accepted");
        assert!(check.window >= check.step, "check `{name}`: window < step");
        assert_duration_usable("window", check.window);
        assert_duration_usable("step", check.step);
        let points = check.window.as_millis() / check.step.as_millis().max(1);
        assert!(
            points <= PROMETHEUS_POINT_LIMIT,
            "check `{name}`: window {:?} / step {:?} = {points} points per series, more than \
             Prometheus answers ({PROMETHEUS_POINT_LIMIT}), was accepted",
            check.window,
            check.step
        );
        assert_spec_settings(&check.spec);
        assert!(check.weight.is_finite() && check.weight >= 0.0);
        for side in [Side::Baseline, Side::Canary] {
            for part in 0..2 {
                let query = check.render_part(&rule.sides, side, part);
                assert!(!query.trim().is_empty(), "check `{name}`: an empty query");
            }
        }
    }
    let s = &rule.scoring;
    assert!(s.pass.is_finite() && s.marginal.is_finite() && s.marginal <= s.pass);
    for g in &s.groups {
        assert!(
            g.weight.is_finite() && g.weight >= 0.0,
            "group weight {}",
            g.weight
        );
    }
}

/// The settings validation promises the judge.
fn assert_spec_settings(spec: &CheckSpec) {
    let name = &spec.name;
    assert!(
        spec.confidence > 0.0 && spec.confidence < 1.0,
        "check `{name}`: confidence {} accepted",
        spec.confidence
    );
    let value = match spec.kind {
        CheckKind::Relative { tolerance } | CheckKind::ErrorRate { tolerance } => {
            assert!(tolerance >= 0.0, "check `{name}`: tolerance {tolerance}");
            tolerance
        }
        CheckKind::Absolute { threshold, .. } => threshold,
        CheckKind::ErrorRateAbsolute { threshold, .. } => {
            assert!(
                (0.0..=1.0).contains(&threshold),
                "rate threshold {threshold}"
            );
            threshold
        }
        CheckKind::Trend {
            max_slope_per_minute,
        } => max_slope_per_minute,
    };
    assert!(value.is_finite(), "check `{name}`: a non-finite setting");
}

/// Parse and validate daemon config text with these environment overrides.
pub fn check_config_text(text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    let path = Path::new("canaryd.toml");
    let parsed = canaryd::config::parse(path, text, env);
    match &parsed {
        Ok(config) => assert_config_usable(config),
        Err(ConfigError::Parse(problems)) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for p in problems {
                assert_problem_located(path, text, p);
            }
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty(), "refused without a problem");
        }
        Err(ConfigError::Override { message, .. }) => {
            assert!(
                !message.trim().is_empty(),
                "an override refused without a reason"
            );
        }
        Err(ConfigError::Read { .. }) => panic!("parsing text read a file"),
    }
    parsed
}

/// What `serve` does with a validated config, short of binding and opening files.
pub fn assert_config_usable(config: &Config) {
    // The daemon's query permits (tokio panics above its maximum).
    let permits = config.scheduler.max_concurrent_queries;
    assert!(
        (1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&permits),
        "max_concurrent_queries = {permits} was accepted; the daemon cannot hold that many permits"
    );
    let _ = tokio::sync::Semaphore::new(permits);
    // Logging: a level the daemon accepts must not silence canaryd's own errors (unless the
    // operator turned logging off on purpose).
    let level = &config.log.level;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|e| panic!("log.level {level:?} was accepted but is not a filter: {e}"));
    if !level.to_ascii_lowercase().contains("off") {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(filter);
        let enabled = tracing::subscriber::with_default(
            subscriber,
            || tracing::enabled!(target: "canaryd::daemon", tracing::Level::ERROR),
        );
        assert!(
            enabled,
            "log.level {level:?} was accepted but silences canaryd's error lines"
        );
    }
    assert_duration_usable("source timeout", config.max_source_timeout());
    for (name, source) in &config.sources {
        let canaryd::config::SourceConfig::Prometheus(c) = source;
        canaryd::source::PrometheusSource::new(name.clone(), c)
            .unwrap_or_else(|e| panic!("source `{name}` was accepted but cannot be built: {e}"));
    }
}

/// The finite numbers a verdict that is not inconclusive may rest on (interval bounds may be
/// unbounded: an interval says how much is known, not what was decided).
fn assert_summary_finite(side: &str, s: &SideSummary, verdict: &str) {
    let numbers = [
        ("mean", s.mean),
        ("median", s.median),
        ("p90", s.p90),
        ("p99", s.p99),
        ("aggregate", s.aggregate.map(|a| a.value)),
        ("errors", s.errors),
        ("total", s.total),
        ("rate", s.rate),
        ("slope per minute", s.slope_per_minute),
    ];
    for (what, value) in numbers {
        if let Some(v) = value {
            assert!(
                v.is_finite(),
                "{verdict} although the {side}'s {what} is {v}: a non-finite number must end as \
                 inconclusive"
            );
        }
    }
}

/// The length of one side's data.
fn len_of(side: &SideData) -> usize {
    match side {
        SideData::Values(p) => p.len(),
        SideData::Counts(p) => p.len(),
    }
}

/// One verdict's invariants, whatever the input.
pub fn assert_result_sound(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
    r: &CheckResult,
) {
    let e = &r.evidence;
    assert!(!r.reason.trim().is_empty(), "a verdict without a reason");
    for (side, summary, data) in [
        ("baseline", &e.baseline, baseline),
        ("canary", &e.canary, canary),
    ] {
        let seen = summary.points + summary.dropped;
        assert!(
            seen == 0 || seen == len_of(data),
            "the {side} had {} points but {} were used and {} dropped",
            len_of(data),
            summary.points,
            summary.dropped
        );
    }
    let verdict = match &r.verdict {
        Verdict::Inconclusive { reason, .. } => {
            assert!(!reason.trim().is_empty(), "inconclusive without a reason");
            return;
        }
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    let settings = [
        spec.confidence,
        match spec.kind {
            CheckKind::Relative { tolerance } | CheckKind::ErrorRate { tolerance } => tolerance,
            CheckKind::Absolute { threshold, .. }
            | CheckKind::ErrorRateAbsolute { threshold, .. } => threshold,
            CheckKind::Trend {
                max_slope_per_minute,
            } => max_slope_per_minute,
        },
    ];
    assert!(
        settings.iter().all(|v| v.is_finite()),
        "{verdict} with a non-finite setting {settings:?}"
    );
    assert!(
        e.canary.points >= 1,
        "{verdict} without a usable canary point"
    );
    if matches!(
        spec.kind,
        CheckKind::Relative { .. } | CheckKind::ErrorRate { .. }
    ) {
        assert!(
            e.baseline.points >= 1,
            "{verdict} without a usable baseline point"
        );
    }
    if matches!(
        spec.kind,
        CheckKind::Relative { .. } | CheckKind::Absolute { .. } | CheckKind::Trend { .. }
    ) {
        assert!(
            e.canary.points >= spec.min_samples,
            "{verdict} on {} canary points of the {} required",
            e.canary.points,
            spec.min_samples
        );
    }
    assert_summary_finite("baseline", &e.baseline, verdict);
    assert_summary_finite("canary", &e.canary, verdict);
    if let Some(p) = e.p_value {
        assert!(
            (0.0..=1.0).contains(&p),
            "{verdict} on the p-value {p}: a non-finite number must end as inconclusive"
        );
    }
    if let Some(effect) = &e.effect {
        assert!(
            effect.difference.is_finite(),
            "{verdict} on the effect {}: a non-finite number must end as inconclusive",
            effect.difference
        );
        if let Some(ratio) = effect.ratio {
            assert!(
                ratio.is_finite(),
                "{verdict} on the ratio {ratio}: a non-finite number must end as inconclusive"
            );
        }
    }
    // What the daemon records reads back (the status page and history read it).
    let json = serde_json::to_string(r).expect("a result encodes as JSON");
    serde_json::from_str::<CheckResult>(&json)
        .unwrap_or_else(|e| panic!("a recorded result does not read back ({e}): {json}"));
}

/// Judge checks as one analysis (each alone and as a family) and score it.
pub fn check_analysis(
    checks: &[(CheckSpec, SideData, SideData)],
    groups: &[(String, bool)],
    scoring: &canaryd::judge::Scoring,
) -> (Vec<CheckResult>, AnalysisScore) {
    let refs: Vec<(&CheckSpec, &SideData, &SideData)> =
        checks.iter().map(|(s, b, c)| (s, b, c)).collect();
    let alone = judge_analysis(&refs, FamilyControl::PerCheck);
    for ((spec, b, c), r) in checks.iter().zip(&alone) {
        assert_result_sound(spec, b, c, r);
        // The same inputs, the same verdict.
        assert_eq!(
            canaryd::judge::judge_check(spec, b, c).verdict,
            r.verdict,
            "judged twice, two verdicts"
        );
    }
    let family = judge_analysis(&refs, FamilyControl::Holm);
    for (((spec, b, c), one), r) in checks.iter().zip(&alone).zip(&family) {
        assert_result_sound(spec, b, c, r);
        // The correction never makes a check fail more easily, nor changes an inconclusive one.
        match (&one.verdict, &r.verdict) {
            (Verdict::Fail, _) => {}
            (v, w) => assert_eq!(v, w, "the family correction changed a verdict"),
        }
    }
    let scored: Vec<canaryd::judge::ScoredCheck> = family
        .iter()
        .zip(groups.iter().cycle())
        .map(|(r, (group, critical))| canaryd::judge::ScoredCheck::new(r, group.clone(), *critical))
        .collect();
    let score = canaryd::judge::score_analysis(&scored, scoring);
    assert_score_sound(&scored, scoring, &score);
    (family, score)
}

/// A scored analysis that passes rests on finite scores and no critical check against it.
fn assert_score_sound(
    checks: &[canaryd::judge::ScoredCheck],
    scoring: &canaryd::judge::Scoring,
    s: &AnalysisScore,
) {
    let critical_failed = checks
        .iter()
        .any(|c| c.critical && c.verdict == Verdict::Fail);
    if critical_failed {
        // Fail; or inconclusive when the scoring itself is unusable (rule validation refuses
        // such scorings): never a pass.
        assert!(
            matches!(
                s.outcome,
                AnalysisOutcome::Fail | AnalysisOutcome::Inconclusive
            ),
            "a critical check failed but the analysis is {:?}",
            s.outcome
        );
        return;
    }
    if s.outcome == AnalysisOutcome::Pass {
        assert!(
            s.score.is_finite() && (0.0..=100.0).contains(&s.score),
            "the analysis passes on the score {}",
            s.score
        );
        assert!(
            s.score >= scoring.pass_score,
            "passes with {} < {}",
            s.score,
            scoring.pass_score
        );
        assert!(
            checks.iter().any(|c| c.verdict == Verdict::Pass),
            "an analysis passes without a passing check"
        );
        assert!(
            !checks
                .iter()
                .any(|c| c.critical && matches!(c.verdict, Verdict::Inconclusive { .. })),
            "an analysis passes with a critical check inconclusive"
        );
    }
}

/// Judge two data files' texts as `canaryd judge` does: a clear error naming the line, or a
/// sound verdict that both reports can show.
pub fn check_judge_texts(
    spec: &CheckSpec,
    baseline: &str,
    canary: &str,
) -> Result<CheckResult, JudgeError> {
    let (bp, cp) = (Path::new("base.csv"), Path::new("canary.csv"));
    let judged = judge_texts(spec, (bp, baseline), (cp, canary));
    match &judged {
        Ok(r) => {
            assert!(!table_report(r).is_empty());
            let doc = json_report(r);
            serde_json::to_string(&doc).expect("the JSON report encodes");
            if !matches!(r.verdict, Verdict::Inconclusive { .. }) {
                assert_summary_finite("baseline", &r.evidence.baseline, r.verdict.as_str());
                assert_summary_finite("canary", &r.evidence.canary, r.verdict.as_str());
            }
        }
        Err(JudgeError::Line {
            path,
            line,
            message,
        }) => {
            let text = if path == "base.csv" { baseline } else { canary };
            assert!(
                *line >= 1 && *line <= text.lines().count(),
                "{path}:{line} is outside the file"
            );
            assert!(
                message.chars().count() <= MAX_MESSAGE_CHARS,
                "a huge message"
            );
        }
        Err(JudgeError::File { message, .. }) => assert!(!message.is_empty()),
        Err(e @ (JudgeError::Read { .. } | JudgeError::Usage(_))) => {
            panic!("judging texts gave {e}")
        }
    }
    judged
}

/// Series equal, NaN values equal to NaN.
fn same_series(a: &[Series], b: &[Series]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.labels == y.labels
                && x.points.len() == y.points.len()
                && x.points.iter().zip(&y.points).all(|(p, q)| {
                    p.t.to_bits() == q.t.to_bits()
                        && (p.v.to_bits() == q.v.to_bits() || (p.v.is_nan() && q.v.is_nan()))
                })
        })
}

/// Read a Prometheus answer both ways: where the fast reader reads it, the tree reader reads the
/// same series; the source's answer is theirs; errors are bounded and say what.
pub fn check_prom_answer(status: u16, body: &[u8]) -> Result<Vec<Series>, SourceError> {
    let ok_status = (200..300).contains(&status);
    // The fast reader is used for 2xx answers only.
    let fast = answer::read_fast(body).filter(|_| ok_status);
    let tree = answer::read_tree(status, body);
    if let Some(fast) = &fast {
        match &tree {
            Ok(tree) => assert!(
                same_series(fast, tree),
                "the readers disagree:\n fast {fast:?}\n tree {tree:?}"
            ),
            Err(e) => {
                panic!("the fast reader read an answer the tree reader refuses ({e}): {fast:?}")
            }
        }
        for s in fast {
            for p in &s.points {
                assert!(p.t.is_finite(), "a point at time {}", p.t);
            }
        }
    }
    let read = answer::read(status, body);
    match (&read, &tree) {
        (Ok(a), Ok(b)) => assert!(same_series(a, b), "the source reads differently"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ if ok_status => panic!("the source and the tree reader disagree: {read:?} / {tree:?}"),
        _ => {}
    }
    if let Err(e) = &tree {
        let message = e.to_string();
        assert!(
            message.chars().count() <= MAX_MESSAGE_CHARS,
            "an error message of {} characters (unbounded): {}...",
            message.chars().count(),
            message.chars().take(300).collect::<String>()
        );
        if !ok_status {
            assert!(matches!(e, SourceError::Http { status: s, .. } if *s == status));
        }
    } else {
        assert!(ok_status, "an HTTP {status} answer read as data");
    }
    tree
}
