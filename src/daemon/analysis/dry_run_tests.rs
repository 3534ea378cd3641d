//! A dry-run check in an analysis: its verdict is recorded and reaches the machine (which
//! audits what it would have done), but it never moves the analysis's outcome.

use super::*;
use crate::rollout::CheckOutcome;

/// A dry-run check records its verdict and never acts (docs/rules.md): its failure must not
/// pull the analysis's score under the marginal line and pause the rollout through the score
/// (the whole-rollout benchmark found search-api's dry-run `p50-latency` doing exactly that).
#[test]
fn a_failing_dry_run_check_does_not_fail_the_analysis() {
    use crate::rules::{KnownNames, parse_rule};
    let text = r#"
[rollout]
name = "web"
team = "t"
source = "prometheus"
actuator = "builtin"
[analysis]
every = "1m"
[[stages]]
name = "10%"
weight = 10
[sides]
baseline = "base"
canary = "new"
[[checks]]
name = "p99"
kind = "relative"
tolerance = 0.1
query = 'p99{version="{{side}}"}'
window = "30m"
[[checks]]
name = "p95"
kind = "relative"
tolerance = 0.1
query = 'p95{version="{{side}}"}'
window = "30m"
[[checks]]
name = "p50"
kind = "relative"
tolerance = 0.1
query = 'p50{version="{{side}}"}'
window = "30m"
action = "notify"
dry_run = true
"#;
    let rule = parse_rule(std::path::Path::new("web.toml"), text, &KnownNames::any()).unwrap();
    let with = |check: usize, verdict: Verdict| {
        let mut r = judge::unjudged(
            &rule.checks[check].spec,
            InconclusiveCause::NoData,
            String::new(),
        );
        r.verdict = verdict;
        r
    };
    let results = [
        with(0, Verdict::Pass),
        with(1, Verdict::Pass),
        with(2, Verdict::Fail),
    ];
    let analysed = describe(&rule, &results, &[]);
    assert_eq!(analysed.report.overall, AnalysisOutcome::Pass);
    assert_eq!(analysed.record.outcome, "pass");
    // The dry-run check's own verdict is still recorded and reaches the machine.
    assert_eq!(analysed.report.checks[2], CheckOutcome::fail("p50"));
    // A live check failing the same way does fail it.
    let live = [
        with(0, Verdict::Pass),
        with(1, Verdict::Fail),
        with(2, Verdict::Pass),
    ];
    assert_ne!(
        describe(&rule, &live, &[]).report.overall,
        AnalysisOutcome::Pass
    );
    // With every check a dry run nothing gates: the analysis passes whatever they say.
    let all_dry = text
        .replace("dry_run = true\n", "")
        .replace("window = \"30m\"\n", "window = \"30m\"\ndry_run = true\n");
    let rule = parse_rule(
        std::path::Path::new("web.toml"),
        &all_dry,
        &KnownNames::any(),
    );
    let rule = rule.unwrap();
    let failing = [
        with(0, Verdict::Fail),
        with(1, Verdict::Fail),
        with(2, Verdict::Fail),
    ];
    let analysed = describe(&rule, &failing, &[]);
    assert_eq!(analysed.report.overall, AnalysisOutcome::Pass);
    assert_eq!(analysed.report.checks[0], CheckOutcome::fail("p99"));
}
