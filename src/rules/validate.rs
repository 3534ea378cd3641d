//! The second stage of loading a rule file: from `RawRule` to a validated `RolloutRule`.
//!
//! This module owns the meaning of a rule file: required keys, ranges, names that must exist in
//! the daemon config, stage order, template merging, query placeholders. `validate` is pure and
//! reports every problem it finds, each with its position and a hint; it never stops at the first.
//! The checks and templates are validated in `check`, the stages and targeting in `stages`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use toml::Spanned;

use crate::rollout::{Plan, RollbackTarget, Severity, StartPolicy, Trigger};

use super::config::{KnownNames, NameKind};
use super::duration;
use super::model::{
    CheckRule, EVENT_KINDS, RolloutRule, Route, Schedule, ScoreGroup, Scoring, Sides,
};
use super::problem::{Problem, SourceText, suggest};
use super::raw::RawRule;

mod check;
mod stages;
pub use check::{default_step, merge};

/// Confidence used when a check does not say.
pub const DEFAULT_CONFIDENCE: f64 = 0.99;
/// Minimum points per side for value checks when a check does not say.
pub const DEFAULT_MIN_POINTS: usize = 10;
/// Minimum events per side for error-rate checks when a check does not say.
pub const DEFAULT_MIN_EVENTS: usize = 100;
/// Pause after this many inconclusive analyses in a row when the file does not say.
pub const DEFAULT_MAX_INCONCLUSIVE: u32 = 3;
/// Scores when `[scoring]` does not say (the usual canary-analysis defaults).
pub const DEFAULT_PASS_SCORE: f64 = 95.0;
pub const DEFAULT_MARGINAL_SCORE: f64 = 75.0;
/// The scoring group of a check that names none.
pub const DEFAULT_GROUP: &str = "default";

/// Check a parsed rule file and build the rollout it describes, or report every problem in it.
pub fn validate(
    raw: &RawRule,
    src: &SourceText<'_>,
    known: &KnownNames,
) -> Result<RolloutRule, Vec<Problem>> {
    let mut v = Validator {
        src,
        problems: Vec::new(),
        groups: BTreeSet::new(),
    };
    let rule = v.rule(raw, known);
    let mut problems = v.problems;
    problems.sort_by_key(|p| p.location);
    problems.dedup();
    match rule {
        Some(rule) if problems.is_empty() => Ok(rule),
        _ => Err(problems),
    }
}

struct Validator<'a> {
    src: &'a SourceText<'a>,
    problems: Vec<Problem>,
    /// The scoring-group names given out so far: the checks of a group share one.
    groups: BTreeSet<Arc<str>>,
}

type Span = Range<usize>;

/// A query key of a check and its value, if set.
type QueryKey<'r> = (&'static str, &'r Option<Spanned<String>>);

/// The start of the file, for problems about something missing at the top level.
const TOP: Span = 0..0;

/// The kinds of check, as written in rule files.
const KINDS: [&str; 5] = [
    "relative",
    "absolute",
    "error-rate",
    "error-rate-absolute",
    "trend",
];

impl Validator<'_> {
    fn err(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let problem = self.src.problem(Some(span), message, hint);
        self.problems.push(problem);
    }

    /// A required value, or a problem saying it is missing from the table at `at`.
    fn need<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        at: &Span,
        what: &str,
        hint: &str,
    ) -> Option<&'r Spanned<T>> {
        if value.is_none() {
            self.err(
                at.clone(),
                format!("missing {what}"),
                Some(hint.to_string()),
            );
        }
        value.as_ref()
    }

    fn duration(&mut self, value: &Spanned<String>, what: &str) -> Option<Duration> {
        match duration::parse(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    value.span(),
                    format!("bad {what}: {e}"),
                    Some(e.hint().into()),
                );
                None
            }
        }
    }

    /// A duration that must be longer than zero.
    fn positive_duration(&mut self, value: &Spanned<String>, what: &str) -> Option<Duration> {
        let d = self.duration(value, what)?;
        if d.is_zero() {
            self.err(
                value.span(),
                format!("{what} must be longer than zero"),
                Some("e.g. `5m`".into()),
            );
            return None;
        }
        Some(d)
    }

    /// One of a closed set of words.
    fn word<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let found = options.iter().find(|(w, _)| *w == value.get_ref().as_str());
        if found.is_none() {
            let names: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
            self.err(
                value.span(),
                format!("unknown {what} `{}`", value.get_ref()),
                Some(suggest(value.get_ref(), &names)),
            );
        }
        found.map(|(_, t)| *t)
    }

    /// A name that must be declared in the daemon config.
    fn known_name(
        &mut self,
        known: &KnownNames,
        kind: NameKind,
        value: &Spanned<String>,
        at: &str,
    ) {
        if let Err(names) = known.check(kind, value.get_ref()) {
            let k = kind.as_str();
            self.err(
                value.span(),
                format!("unknown {k} `{}`{at}", value.get_ref()),
                Some(format!(
                    "{}; declare it as [{k}s.{}] in the daemon config",
                    suggest(value.get_ref(), &names),
                    value.get_ref()
                )),
            );
        }
    }

    fn count(&mut self, value: &Spanned<i64>, what: &str, min: i64) -> Option<u32> {
        let n = *value.get_ref();
        match u32::try_from(n) {
            Ok(n) if i64::from(n) >= min => Some(n),
            _ => {
                self.err(
                    value.span(),
                    format!("{what} must be a whole number of at least {min}, not {n}"),
                    None,
                );
                None
            }
        }
    }

    /// The shared copy of a scoring group's name (checks of one group share one allocation).
    fn group_name(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.groups.get(name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = name.into();
        self.groups.insert(Arc::clone(&new));
        new
    }

    fn rule(&mut self, raw: &RawRule, known: &KnownNames) -> Option<RolloutRule> {
        let header = self.rollout_header(raw, known);
        let (schedule, warmup, max_inconclusive) = self.analysis(raw);
        let stages = self.stages(raw);
        let targeting = self.targeting(raw, header.as_ref().map(|h| h.name.as_str()));
        let sides = self.sides(raw);
        let checks = self.checks(raw);
        let scoring = self.scoring(raw, &checks);
        let routes = self.routes(raw, known);

        let header = header?;
        let checks = checks?;
        let (checks, triggers): (Vec<CheckRule>, Vec<Trigger>) = checks.into_iter().unzip();
        Some(RolloutRule {
            path: self.src.path.to_path_buf(),
            name: header.name,
            team: header.team,
            source: header.source,
            actuator: header.actuator,
            schedule: schedule?,
            plan: Plan {
                stages: stages?,
                rollback_to: header.rollback_to,
                warmup: warmup?,
                max_inconclusive: max_inconclusive?,
                triggers,
                start: header.start,
            },
            targeting: targeting?,
            sides: sides?,
            checks,
            scoring: scoring?,
            routes: routes?,
        })
    }

    fn rollout_header(&mut self, raw: &RawRule, known: &KnownNames) -> Option<Header> {
        let Some(rollout) = &raw.rollout else {
            self.err(
                TOP,
                "missing [rollout] table",
                Some(
                    "start the file with [rollout] and its name, team, source and actuator".into(),
                ),
            );
            return None;
        };
        let at = rollout.span();
        let r = rollout.get_ref();
        let name = self.need(
            &r.name,
            &at,
            "`name` in [rollout]",
            "e.g. name = \"checkout-api\"",
        );
        let team = self.need(
            &r.team,
            &at,
            "`team` in [rollout]",
            "the owning team, e.g. team = \"payments\"",
        );
        let source = self.need(
            &r.source,
            &at,
            "`source` in [rollout]",
            "a metric source of the daemon config, e.g. source = \"prometheus\"",
        );
        let actuator = self.need(
            &r.actuator,
            &at,
            "`actuator` in [rollout]",
            "an actuator of the daemon config, e.g. actuator = \"builtin\"",
        );
        if let Some(name) = name {
            let n = name.get_ref();
            let ok = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                self.err(
                    name.span(),
                    format!(
                        "rollout name `{n}` may only contain letters, digits, `-`, `_` and `.`"
                    ),
                    Some(
                        "it appears in URLs, metrics and notifications; e.g. `checkout-api`".into(),
                    ),
                );
            }
        }
        if let Some(team) = team
            && team.get_ref().trim().is_empty()
        {
            self.err(
                team.span(),
                "`team` is empty",
                Some("name the owning team".into()),
            );
        }
        if let Some(source) = source {
            self.known_name(known, NameKind::Source, source, "");
        }
        if let Some(actuator) = actuator {
            self.known_name(known, NameKind::Actuator, actuator, "");
        }
        let rollback_to = match &r.rollback_to {
            None => Some(RollbackTarget::PreviousStage),
            Some(value) => self.word(
                value,
                "rollback target",
                &[
                    ("previous-stage", RollbackTarget::PreviousStage),
                    ("zero", RollbackTarget::Zero),
                ],
            ),
        };
        let start = match &r.start {
            None => Some(StartPolicy::Auto),
            Some(value) => self.word(
                value,
                "start policy",
                &[("auto", StartPolicy::Auto), ("manual", StartPolicy::Manual)],
            ),
        };
        Some(Header {
            name: name?.get_ref().clone(),
            team: team?.get_ref().clone(),
            source: source?.get_ref().clone(),
            actuator: actuator?.get_ref().clone(),
            rollback_to: rollback_to?,
            start: start?,
        })
    }

    fn analysis(&mut self, raw: &RawRule) -> (Option<Schedule>, Option<Duration>, Option<u32>) {
        let Some(analysis) = &raw.analysis else {
            self.err(
                TOP,
                "missing [analysis] table",
                Some("say when analyses run: [analysis] with schedule = \"*/2 * * * *\" or every = \"2m\"".into()),
            );
            return (None, None, None);
        };
        let at = analysis.span();
        let a = analysis.get_ref();
        let schedule = match (&a.schedule, &a.every) {
            (Some(cron), None) => self.cron(cron),
            (None, Some(every)) => self
                .positive_duration(every, "`every`")
                .map(Schedule::Every),
            (Some(_), Some(every)) => {
                self.err(
                    every.span(),
                    "both `schedule` and `every` in [analysis]",
                    Some("keep one: a crontab `schedule` or an interval `every`".into()),
                );
                None
            }
            (None, None) => {
                self.err(
                    at,
                    "missing `schedule` or `every` in [analysis]",
                    Some("e.g. schedule = \"*/2 * * * *\" (crontab) or every = \"2m\"".into()),
                );
                None
            }
        };
        let warmup = match &a.warmup {
            None => Some(Duration::ZERO),
            Some(w) => self.duration(w, "`warmup`"),
        };
        let max_inconclusive = match &a.max_inconclusive {
            None => Some(DEFAULT_MAX_INCONCLUSIVE),
            Some(n) => self.count(n, "`max_inconclusive`", 1),
        };
        (schedule, warmup, max_inconclusive)
    }

    fn cron(&mut self, value: &Spanned<String>) -> Option<Schedule> {
        let expr = value.get_ref().trim();
        let fields = expr.split_whitespace().count();
        let hint = "5 fields: minute hour day-of-month month day-of-week, e.g. \"*/2 * * * *\"";
        if fields != 5 {
            self.err(
                value.span(),
                format!("bad crontab `{expr}`: it has {fields} fields, not 5"),
                Some(hint.into()),
            );
            return None;
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        match parser.parse(expr) {
            Ok(cron) => Some(Schedule::Cron {
                expr: expr.to_string(),
                cron: Box::new(cron),
            }),
            Err(e) => {
                self.err(
                    value.span(),
                    format!("bad crontab `{expr}`: {e}"),
                    Some(hint.into()),
                );
                None
            }
        }
    }

    fn sides(&mut self, raw: &RawRule) -> Option<Sides> {
        let Some(sides) = &raw.sides else {
            self.err(
                TOP,
                "missing [sides] table",
                Some("say what {{side}} becomes in queries: [sides] with baseline = \"v1\" and canary = \"v2\"".into()),
            );
            return None;
        };
        let at = sides.span();
        let s = sides.get_ref();
        let baseline = self.need(
            &s.baseline,
            &at,
            "`baseline` in [sides]",
            "the label value of the old version, e.g. baseline = \"stable\"",
        );
        let canary = self.need(
            &s.canary,
            &at,
            "`canary` in [sides]",
            "the label value of the new version, e.g. canary = \"canary\"",
        );
        let (baseline, canary) = (baseline?, canary?);
        if baseline.get_ref() == canary.get_ref() {
            self.err(
                canary.span(),
                format!("baseline and canary are both `{}`", canary.get_ref()),
                Some("the two sides must select different series".into()),
            );
            return None;
        }
        Some(Sides {
            label: s
                .label
                .as_ref()
                .map(|l| l.get_ref().clone())
                .unwrap_or_default(),
            baseline: baseline.get_ref().clone(),
            canary: canary.get_ref().clone(),
        })
    }

    fn scoring(
        &mut self,
        raw: &RawRule,
        checks: &Option<Vec<(CheckRule, Trigger)>>,
    ) -> Option<Scoring> {
        let (pass, marginal, declared) = match &raw.scoring {
            None => (DEFAULT_PASS_SCORE, DEFAULT_MARGINAL_SCORE, &BTreeMap::new()),
            Some(s) => {
                let s = s.get_ref();
                let mut score = |v: &Option<Spanned<f64>>, default: f64, what: &str| match v {
                    None => Some(default),
                    Some(v) if (0.0..=100.0).contains(v.get_ref()) => Some(*v.get_ref()),
                    Some(v) => {
                        self.err(
                            v.span(),
                            format!("{what} score {} is outside 0 to 100", v.get_ref()),
                            None,
                        );
                        None
                    }
                };
                let pass = score(&s.pass, DEFAULT_PASS_SCORE, "pass");
                let marginal = score(&s.marginal, DEFAULT_MARGINAL_SCORE, "marginal");
                let (pass, marginal) = (pass?, marginal?);
                if marginal > pass
                    && let Some(m) = s.marginal.as_ref().or(s.pass.as_ref())
                {
                    self.err(
                        m.span(),
                        format!("marginal score {marginal} is above the pass score {pass}"),
                        Some("an analysis scoring at least `pass` passes; at least `marginal`, is marginal; below, fails".into()),
                    );
                    return None;
                }
                (pass, marginal, &s.groups)
            }
        };
        let mut ok = true;
        for (name, weight) in declared {
            let w = *weight.get_ref();
            if !(w.is_finite() && w > 0.0 && w <= check::MAX_WEIGHT) {
                self.err(
                    weight.span(),
                    format!(
                        "weight {w} of scoring group `{name}` must be above 0 and at most {}",
                        check::MAX_WEIGHT
                    ),
                    None,
                );
                ok = false;
            }
        }
        let used: BTreeSet<&str> = raw
            .checks
            .iter()
            .map(|c| {
                let c = c.get_ref();
                let from_template = c.use_.as_ref().and_then(|u| raw.templates.get(u.get_ref()));
                c.group
                    .as_ref()
                    .or(from_template.and_then(|t| t.get_ref().group.as_ref()))
                    .map_or(DEFAULT_GROUP, |g| g.get_ref().as_str())
            })
            .collect();
        if !declared.is_empty() {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            for check in &raw.checks {
                let c = check.get_ref();
                let from_template = c.use_.as_ref().and_then(|u| raw.templates.get(u.get_ref()));
                let group = c
                    .group
                    .as_ref()
                    .or(from_template.and_then(|t| t.get_ref().group.as_ref()));
                let (group_name, span) = match group {
                    Some(g) => (g.get_ref().as_str(), g.span()),
                    None => (DEFAULT_GROUP, check.span()),
                };
                if !declared.contains_key(group_name) {
                    self.err(
                        span,
                        format!("unknown scoring group `{group_name}`"),
                        Some(format!(
                            "{}; add it under [scoring.groups]",
                            suggest(group_name, &names)
                        )),
                    );
                    ok = false;
                }
            }
            for (name, weight) in declared {
                if !used.contains(name.as_str()) {
                    self.err(
                        weight.span(),
                        format!("scoring group `{name}` has no checks"),
                        Some(
                            "remove it, or fix the `group` of the checks meant to be in it".into(),
                        ),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let groups = match checks {
            Some(checks) => {
                let used: BTreeSet<&str> = checks.iter().map(|(c, _)| &*c.group).collect();
                used.into_iter()
                    .map(|name| ScoreGroup {
                        name: name.to_string(),
                        weight: declared.get(name).map_or(1.0, |w| *w.get_ref()),
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let family_wise = raw
            .scoring
            .as_ref()
            .and_then(|s| s.get_ref().family_wise.as_ref())
            .is_none_or(|v| *v.get_ref());
        Some(Scoring {
            pass,
            marginal,
            groups,
            family_wise,
        })
    }

    fn routes(&mut self, raw: &RawRule, known: &KnownNames) -> Option<Vec<Route>> {
        let mut routes = Vec::new();
        let mut ok = true;
        for (i, route) in raw.routes.iter().enumerate() {
            let at = route.span();
            let r = route.get_ref();
            let n = i + 1;
            if r.receivers.is_empty() {
                self.err(
                    at.clone(),
                    format!("route {n} has no receivers"),
                    Some("e.g. receivers = [\"team-email\"]; receivers are [receivers.NAME] in the daemon config".into()),
                );
                ok = false;
            }
            let before = self.problems.len();
            for receiver in &r.receivers {
                self.known_name(
                    known,
                    NameKind::Receiver,
                    receiver,
                    &format!(" in route {n}"),
                );
            }
            let mut events = Vec::new();
            match &r.events {
                None => events.extend(EVENT_KINDS.iter().map(|(_, k)| *k)),
                Some(list) => {
                    if list.is_empty() {
                        self.err(
                            at.clone(),
                            format!("route {n} has an empty `events` list"),
                            Some("leave `events` out to route every event".into()),
                        );
                    }
                    for e in list {
                        if let Some(kind) = self.word(e, "event", &EVENT_KINDS) {
                            events.push(kind);
                        }
                    }
                }
            }
            let min_severity = match &r.min_severity {
                None => Some(Severity::Info),
                Some(s) => self.word(
                    s,
                    "severity",
                    &[
                        ("info", Severity::Info),
                        ("warning", Severity::Warning),
                        ("critical", Severity::Critical),
                    ],
                ),
            };
            if self.problems.len() != before {
                ok = false;
            }
            if let Some(min_severity) = min_severity {
                routes.push(Route {
                    receivers: r.receivers.iter().map(|x| x.get_ref().clone()).collect(),
                    events,
                    min_severity,
                });
            }
        }
        ok.then_some(routes)
    }
}

/// The `[rollout]` table, validated.
struct Header {
    name: String,
    team: String,
    source: String,
    actuator: String,
    rollback_to: RollbackTarget,
    start: StartPolicy,
}
