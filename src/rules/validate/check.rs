//! The checks of a rule file: `[[checks]]` and `[templates.NAME]`, validated into the judge's
//! `CheckSpec`, the plan's `Trigger` and the queries with their window and step.
//!
//! Part of `validate` (the same `Validator`, the same rules: pure, every problem reported with
//! its position and a hint); it owns check kinds and their parameters, the bounds that keep a
//! check's arithmetic and its backend requests in range, templates and query placeholders.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::judge::{Aggregate, CheckKind, CheckSpec, Direction, ThresholdTest};
use crate::rollout::{NoDataPolicy, Sustain, Trigger, TriggerAction};

use super::super::duration;
use super::super::model::{CheckRule, PLACEHOLDERS, Queries};
use super::super::problem::{list, suggest};
use super::super::raw::{RawCheck, RawRule};
use super::{
    DEFAULT_CONFIDENCE, DEFAULT_GROUP, DEFAULT_MIN_EVENTS, DEFAULT_MIN_POINTS, KINDS, QueryKey,
    Span, TOP, Validator,
};

/// The most points a range query may ask per series: Prometheus, canaryd's only kind of
/// source, refuses more than 11,000 (`window / step + 1`, both ends included), so a check over
/// that would fail every analysis with a backend error.
pub const MAX_POINTS_PER_SERIES: u128 = 11_000;
/// The largest weight of a check or a scoring group: weights are relative, and a sum of huge
/// ones overflows to infinity, which would make the score NaN.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// The largest `tolerance` of a relative check (1000 = the canary 1001 times the baseline): past
/// it `baseline * (1 + tolerance)` can overflow to infinity, a limit nothing fails.
pub const MAX_RELATIVE_TOLERANCE: f64 = 1000.0;

impl Validator<'_> {
    /// Whether a `window` at `step` fits the backend's point limit; else a problem at `step`.
    fn points_per_series(
        &mut self,
        step_value: &Spanned<String>,
        window: Duration,
        step: Duration,
        shown: &str,
    ) -> bool {
        let points = window.as_millis() / step.as_millis().max(1) + 1;
        if points <= MAX_POINTS_PER_SERIES {
            return true;
        }
        // The shortest step that fits, rounded up to whole seconds once it is one or more.
        let min_ms = window.as_millis().div_ceil(MAX_POINTS_PER_SERIES - 1);
        let min_ms = if min_ms >= 1000 {
            min_ms.div_ceil(1000) * 1000
        } else {
            min_ms
        };
        let min_step = Duration::from_millis(u64::try_from(min_ms).unwrap_or(u64::MAX));
        self.err(
            step_value.span(),
            format!(
                "window {} at step {} of {shown} is {points} points per series; Prometheus answers at most {MAX_POINTS_PER_SERIES}",
                duration::format(window),
                duration::format(step),
            ),
            Some(format!(
                "use a step of at least {} for this window, or a shorter window",
                duration::format(min_step)
            )),
        );
        false
    }

    pub(super) fn checks(&mut self, raw: &RawRule) -> Option<Vec<(CheckRule, Trigger)>> {
        for (name, template) in &raw.templates {
            let t = template.get_ref();
            for (field, present) in [("name", &t.name), ("use", &t.use_)] {
                if let Some(value) = present {
                    self.err(
                        value.span(),
                        format!("template `{name}` has `{field}`"),
                        Some("templates cannot be named or use other templates; give the name in the check".into()),
                    );
                }
            }
        }
        if raw.checks.is_empty() {
            self.err(
                raw.rollout.as_ref().map_or(TOP, Spanned::span),
                "no checks",
                Some(
                    "add [[checks]] entries; a rollout with nothing to judge cannot advance safely"
                        .into(),
                ),
            );
            return None;
        }
        let has_label = raw
            .sides
            .as_ref()
            .is_some_and(|s| s.get_ref().label.is_some());
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, check) in raw.checks.iter().enumerate() {
            let at = check.span();
            let merged = match &check.get_ref().use_ {
                None => check.get_ref().clone(),
                Some(used) => match raw.templates.get(used.get_ref()) {
                    Some(template) => merge(check.get_ref(), template.get_ref()),
                    None => {
                        let known: Vec<&str> = raw.templates.keys().map(String::as_str).collect();
                        self.err(
                            used.span(),
                            format!("unknown template `{}` in check {}", used.get_ref(), i + 1),
                            Some(format!(
                                "{}; templates are [templates.NAME] tables in the same file",
                                suggest(used.get_ref(), &known)
                            )),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if let Some(name) = &check.get_ref().name {
                if let Some(first) = names.get(name.get_ref()) {
                    self.err(
                        name.span(),
                        format!("duplicate check name `{}`", name.get_ref()),
                        Some(format!(
                            "first used by check {first}; check names must be unique"
                        )),
                    );
                } else {
                    names.insert(name.get_ref().clone(), i + 1);
                }
            }
            match self.check(&merged, &at, i + 1, has_label) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn check(
        &mut self,
        c: &RawCheck,
        at: &Span,
        index: usize,
        has_label: bool,
    ) -> Option<(CheckRule, Trigger)> {
        let name = self.need(
            &c.name,
            at,
            &format!("`name` in check {index}"),
            "e.g. name = \"p99-latency\"",
        );
        let shown = name.map_or(format!("check {index}"), |n| {
            format!("check `{}`", n.get_ref())
        });
        if let Some(n) = name
            && n.get_ref().trim().is_empty()
        {
            self.err(n.span(), "check name is empty", None);
        }
        let kind_word = self.need(
            &c.kind,
            at,
            &format!("`kind` in {shown}"),
            "one of `relative`, `absolute`, `error-rate`, `error-rate-absolute`, `trend`",
        );
        let kind_word = kind_word.and_then(|k| {
            let options: Vec<(&str, &str)> = KINDS.iter().map(|k| (*k, *k)).collect();
            self.word(k, "check kind", &options)
        });
        let direction = match &c.direction {
            None => Some(Direction::HigherIsWorse),
            Some(d) => self.word(
                d,
                "direction",
                &[
                    ("higher-is-worse", Direction::HigherIsWorse),
                    ("lower-is-worse", Direction::LowerIsWorse),
                    ("either", Direction::Either),
                ],
            ),
        };
        let kind = kind_word.and_then(|k| self.kind(k, c, at, &shown));
        let counts = matches!(kind_word, Some("error-rate" | "error-rate-absolute"));

        let confidence = match &c.confidence {
            None => Some(DEFAULT_CONFIDENCE),
            Some(conf) => {
                let x = *conf.get_ref();
                if x > 0.0 && x < 1.0 {
                    Some(x)
                } else {
                    self.err(
                        conf.span(),
                        format!("confidence {x} of {shown} is not between 0 and 1"),
                        Some("write it as a fraction, e.g. 0.99 for 99%".into()),
                    );
                    None
                }
            }
        };
        let min_samples = match &c.min_samples {
            None => Some(if counts {
                DEFAULT_MIN_EVENTS
            } else {
                DEFAULT_MIN_POINTS
            }),
            Some(n) => self.count(n, "`min_samples`", 1).map(|n| n as usize),
        };
        let no_data = match &c.no_data {
            None => Some(NoDataPolicy::Inconclusive),
            Some(w) => self.word(
                w,
                "no-data policy",
                &[
                    ("inconclusive", NoDataPolicy::Inconclusive),
                    ("pause", NoDataPolicy::Pause),
                    ("fail", NoDataPolicy::Fail),
                ],
            ),
        };
        let sustain = match (&c.for_, &c.consecutive) {
            (None, None) => Some(Sustain::Immediately),
            (Some(f), None) => self.positive_duration(f, "`for`").map(Sustain::For),
            (None, Some(n)) => self.count(n, "`consecutive`", 1).map(Sustain::Consecutive),
            (Some(_), Some(n)) => {
                self.err(
                    n.span(),
                    format!("{shown} has both `for` and `consecutive`"),
                    Some("keep one: `for = \"5m\"` (failing for 5 minutes) or `consecutive = 3` (3 analyses in a row)".into()),
                );
                None
            }
        };
        let critical = c.critical.as_ref().is_some_and(|x| *x.get_ref());
        let action = match &c.action {
            None if critical => Some(TriggerAction::Rollback),
            None => Some(TriggerAction::Pause),
            Some(w) => self.word(
                w,
                "action",
                &[
                    ("rollback", TriggerAction::Rollback),
                    ("pause", TriggerAction::Pause),
                    ("notify", TriggerAction::Notify),
                ],
            ),
        };
        let group = self.group_name(c.group.as_ref().map_or(DEFAULT_GROUP, |g| g.get_ref()));
        let weight = match &c.weight {
            None => Some(1.0),
            Some(w) => {
                let x = *w.get_ref();
                if x.is_finite() && x > 0.0 && x <= MAX_WEIGHT {
                    Some(x)
                } else {
                    self.err(
                        w.span(),
                        format!("weight {x} of {shown} must be above 0 and at most {MAX_WEIGHT}"),
                        Some("weights are relative to each other: 1 and 3 weigh as 0.1 and 0.3; larger ones could overflow the score".into()),
                    );
                    None
                }
            }
        };
        let window = self
            .need(
                &c.window,
                at,
                &format!("`window` in {shown}"),
                "the range each query covers, e.g. window = \"5m\"",
            )
            .and_then(|w| self.positive_duration(w, "`window`"));
        let step = match (&c.step, window) {
            (None, Some(w)) if default_step(w) > w => {
                // The default step is never below a second: a shorter window holds one point.
                let span = c.window.as_ref().map_or(at.clone(), Spanned::span);
                self.err(
                    span,
                    format!(
                        "`window` {} of {shown} is shorter than its step {} (the default, never \
                         below 1s): it would hold at most one point per series",
                        duration::format(w),
                        duration::format(default_step(w))
                    ),
                    Some("a window covers many steps, e.g. window = \"5m\" (30 points of 10s)".into()),
                );
                None
            }
            (None, Some(w)) => Some(default_step(w)),
            (None, None) => None,
            (Some(st), w) => self
                .positive_duration(st, "`step`")
                .and_then(|d| match w {
                    Some(w) if d > w => {
                        self.err(
                            st.span(),
                            format!(
                                "`step` {} of {shown} is longer than its window {}",
                                duration::format(d),
                                duration::format(w)
                            ),
                            Some("a step is the spacing of the points inside the window, e.g. window = \"30m\", step = \"1m\"".into()),
                        );
                        None
                    }
                    Some(w) => self.points_per_series(st, w, d, &shown).then_some(d),
                    None => Some(d),
                }),
        };
        let queries = kind_word.and_then(|_| self.queries(c, at, &shown, counts, has_label));

        let name: Arc<str> = name?.get_ref().as_str().into();
        let spec = CheckSpec {
            name: Arc::clone(&name),
            kind: kind?,
            direction: direction?,
            confidence: confidence?,
            min_samples: min_samples?,
        };
        let trigger = Trigger {
            check: name,
            action: action?,
            sustain: sustain?,
            no_data: no_data?,
            dry_run: c.dry_run.as_ref().is_some_and(|x| *x.get_ref()),
            window: window.unwrap_or_default(),
        };
        let rule = CheckRule {
            spec,
            queries: queries?,
            window: window?,
            step: step?,
            group,
            weight: weight?,
            critical,
        };
        Some((rule, trigger))
    }

    /// The kind with its parameter; flags parameters that belong to other kinds.
    fn kind(&mut self, kind: &str, c: &RawCheck, at: &Span, shown: &str) -> Option<CheckKind> {
        let params: [(&str, Option<Span>); 5] = [
            ("tolerance", c.tolerance.as_ref().map(Spanned::span)),
            ("threshold", c.threshold.as_ref().map(Spanned::span)),
            ("aggregate", c.aggregate.as_ref().map(Spanned::span)),
            ("test", c.test.as_ref().map(Spanned::span)),
            (
                "max_slope_per_minute",
                c.max_slope_per_minute.as_ref().map(Spanned::span),
            ),
        ];
        let (allowed, example): (&[&str], &str) = match kind {
            "relative" => (
                &["tolerance"],
                "tolerance = 0.10 (10% worse than the baseline)",
            ),
            "error-rate" => (&["tolerance"], "tolerance = 0.01 (1 percentage point)"),
            "absolute" => (&["threshold", "aggregate", "test"], "threshold = 0.5"),
            "error-rate-absolute" => (&["threshold", "test"], "threshold = 0.005 (0.5%)"),
            _ => (&["max_slope_per_minute"], "max_slope_per_minute = 10.0"),
        };
        for (param, span) in &params {
            if let Some(span) = span
                && !allowed.contains(param)
            {
                self.err(
                    span.clone(),
                    format!("`{param}` does not apply to {shown}, a `{kind}` check"),
                    Some(format!(
                        "`{kind}` checks take {}",
                        list(allowed.iter().copied())
                    )),
                );
            }
        }
        let needed = allowed[0];
        let value = match needed {
            "tolerance" => &c.tolerance,
            "threshold" => &c.threshold,
            _ => &c.max_slope_per_minute,
        };
        let value = self.need(
            value,
            at,
            &format!("`{needed}` in {shown}"),
            &format!("e.g. {example}"),
        )?;
        let x = *value.get_ref();
        let in_range = match kind {
            "relative" => (0.0..=MAX_RELATIVE_TOLERANCE).contains(&x),
            "error-rate" | "error-rate-absolute" => (0.0..=1.0).contains(&x),
            _ => x.is_finite(),
        };
        if !in_range {
            let hint = match kind {
                "relative" => {
                    "a fraction of the baseline from 0 to at most 1000: 0.10 = 10% worse, 1.0 = twice the baseline (a larger one would overflow and never fail)"
                }
                "trend" => "a finite slope per minute",
                "absolute" => "a finite number on the metric's own scale",
                _ => "a rate between 0 and 1: 0.01 = 1%",
            };
            self.err(
                value.span(),
                format!("{needed} {x} of {shown} is out of range"),
                Some(hint.into()),
            );
            return None;
        }
        let test = match (kind, &c.test) {
            ("absolute" | "error-rate-absolute", Some(t)) => self.word(
                t,
                "test",
                &[
                    ("observed", ThresholdTest::Observed),
                    ("statistical", ThresholdTest::Statistical),
                ],
            )?,
            _ => ThresholdTest::Observed,
        };
        Some(match kind {
            "relative" => CheckKind::Relative { tolerance: x },
            "error-rate" => CheckKind::ErrorRate { tolerance: x },
            "error-rate-absolute" => CheckKind::ErrorRateAbsolute { threshold: x, test },
            "trend" => CheckKind::Trend {
                max_slope_per_minute: x,
            },
            _ => {
                let aggregate = match &c.aggregate {
                    None => Aggregate::Mean,
                    Some(a) => self.aggregate(a)?,
                };
                if test == ThresholdTest::Statistical && !aggregate.has_test() {
                    self.untestable(c, shown);
                    return None;
                }
                CheckKind::Absolute {
                    threshold: x,
                    aggregate,
                    test,
                }
            }
        })
    }

    /// `test = "statistical"` on an aggregate that is a single point: a problem at the `test`.
    fn untestable(&mut self, c: &RawCheck, shown: &str) {
        let Some(t) = &c.test else { return };
        let word = c
            .aggregate
            .as_ref()
            .map_or("mean", |a| a.get_ref().as_str());
        self.err(
            t.span(),
            format!(
                "`test = \"statistical\"` of {shown} cannot test aggregate `{word}`: it is a \
                 single point, and no test says more about it than its observed value"
            ),
            Some(
                "use aggregate = \"mean\", \"median\" or a percentile such as \"p99\", or drop \
                 `test` to compare the observed value"
                    .into(),
            ),
        );
    }

    fn aggregate(&mut self, value: &Spanned<String>) -> Option<Aggregate> {
        let word = value.get_ref().as_str();
        let fixed = [
            ("mean", Aggregate::Mean),
            ("median", Aggregate::Median),
            ("min", Aggregate::Min),
            ("max", Aggregate::Max),
            ("last", Aggregate::Last),
        ];
        if let Some((_, a)) = fixed.iter().find(|(w, _)| *w == word) {
            return Some(*a);
        }
        let quantile = word
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| *p > 0.0 && *p < 100.0);
        if let Some(p) = quantile {
            return Some(Aggregate::Quantile(p / 100.0));
        }
        self.err(
            value.span(),
            format!("unknown aggregate `{word}`"),
            Some("one of `mean`, `median`, `min`, `max`, `last`, or a percentile such as `p95` or `p99.9`".into()),
        );
        None
    }

    fn queries(
        &mut self,
        c: &RawCheck,
        at: &Span,
        shown: &str,
        counts: bool,
        has_label: bool,
    ) -> Option<Queries> {
        let (wanted, unwanted): (&[QueryKey<'_>], &[QueryKey<'_>]) = if counts {
            (
                &[
                    ("errors_query", &c.errors_query),
                    ("total_query", &c.total_query),
                ],
                &[("query", &c.query)],
            )
        } else {
            (
                &[("query", &c.query)],
                &[
                    ("errors_query", &c.errors_query),
                    ("total_query", &c.total_query),
                ],
            )
        };
        for (key, value) in unwanted {
            if let Some(v) = value {
                let instead = if counts {
                    "`errors_query` and `total_query`"
                } else {
                    "one `query`"
                };
                self.err(
                    v.span(),
                    format!("`{key}` does not apply to {shown}"),
                    Some(format!("this kind of check takes {instead}")),
                );
            }
        }
        let mut found = Vec::new();
        for (key, value) in wanted {
            let hint = if counts {
                "error-rate checks need errors_query and total_query, e.g. errors_query = 'sum(increase(http_requests_total{version=\"{{side}}\",code=~\"5..\"}[{{step}}]))'"
            } else {
                "e.g. query = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version=\"{{side}}\"}[{{step}}])))'"
            };
            let Some(q) = self.need(value, at, &format!("`{key}` in {shown}"), hint) else {
                continue;
            };
            if q.get_ref().contains("[{{window}}]") {
                self.err(
                    q.span(),
                    format!("`{key}` of {shown} uses `[{{{{window}}}}]` as a range"),
                    Some("each point of the analysis would cover the whole window, so points overlap: counts are summed many times over and latencies smoothed into false certainty; write `[{{step}}]`".into()),
                );
                continue;
            }
            if self.placeholders(q, key, shown, has_label) {
                found.push(q.get_ref().clone());
            }
        }
        match (counts, found.as_slice()) {
            (false, [query]) => Some(Queries::Values {
                query: query.as_str().into(),
            }),
            (true, [errors, total]) => Some(Queries::Counts {
                errors: errors.as_str().into(),
                total: total.as_str().into(),
            }),
            _ => None,
        }
    }

    /// Whether a query template's placeholders are all known and `{{side}}` is among them.
    fn placeholders(
        &mut self,
        q: &Spanned<String>,
        key: &str,
        shown: &str,
        has_label: bool,
    ) -> bool {
        let text = q.get_ref();
        if text.trim().is_empty() {
            self.err(q.span(), format!("`{key}` of {shown} is empty"), None);
            return false;
        }
        let mut ok = true;
        let mut seen = BTreeSet::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                self.err(
                    q.span(),
                    format!("unclosed `{{{{` in `{key}` of {shown}"),
                    Some(
                        "placeholders are written {{side}}, {{label}}, {{window}}, {{step}}".into(),
                    ),
                );
                return false;
            };
            let name = after[..close].trim();
            if !PLACEHOLDERS.contains(&name) {
                self.err(
                    q.span(),
                    format!("unknown placeholder `{{{{{name}}}}}` in `{key}` of {shown}"),
                    Some(suggest(name, &PLACEHOLDERS)),
                );
                ok = false;
            }
            seen.insert(name.to_string());
            rest = &after[close + 2..];
        }
        // An unknown placeholder is most likely a misspelt {{side}}: one problem is enough.
        if ok && !seen.contains("side") {
            self.err(
                q.span(),
                format!("`{key}` of {shown} has no `{{{{side}}}}`"),
                Some("without it baseline and canary run the same query; put {{side}} where the version label's value goes".into()),
            );
            ok = false;
        }
        if seen.contains("label") && !has_label {
            self.err(
                q.span(),
                format!("`{key}` of {shown} uses `{{{{label}}}}` but [sides] has no `label`"),
                Some("add label = \"version\" (or your label's name) to [sides]".into()),
            );
            ok = false;
        }
        ok
    }
}

/// The default spacing of a check's points: 30 points over the window, at least a second apart.
pub fn default_step(window: Duration) -> Duration {
    (window / 30).max(Duration::from_secs(1))
}

/// A check with its template: every key the check sets wins, the template fills the rest.
pub fn merge(check: &RawCheck, template: &RawCheck) -> RawCheck {
    fn pick<T: Clone>(a: &Option<Spanned<T>>, b: &Option<Spanned<T>>) -> Option<Spanned<T>> {
        a.clone().or_else(|| b.clone())
    }
    let (c, t) = (check, template);
    // `for` and `consecutive` are one setting: a check that sets either replaces the template's.
    let sustain_from = if c.for_.is_some() || c.consecutive.is_some() {
        c
    } else {
        t
    };
    RawCheck {
        name: c.name.clone(),
        use_: c.use_.clone(),
        kind: pick(&c.kind, &t.kind),
        direction: pick(&c.direction, &t.direction),
        tolerance: pick(&c.tolerance, &t.tolerance),
        threshold: pick(&c.threshold, &t.threshold),
        aggregate: pick(&c.aggregate, &t.aggregate),
        test: pick(&c.test, &t.test),
        max_slope_per_minute: pick(&c.max_slope_per_minute, &t.max_slope_per_minute),
        confidence: pick(&c.confidence, &t.confidence),
        min_samples: pick(&c.min_samples, &t.min_samples),
        no_data: pick(&c.no_data, &t.no_data),
        for_: sustain_from.for_.clone(),
        consecutive: sustain_from.consecutive.clone(),
        action: pick(&c.action, &t.action),
        dry_run: pick(&c.dry_run, &t.dry_run),
        group: pick(&c.group, &t.group),
        weight: pick(&c.weight, &t.weight),
        critical: pick(&c.critical, &t.critical),
        query: pick(&c.query, &t.query),
        errors_query: pick(&c.errors_query, &t.errors_query),
        total_query: pick(&c.total_query, &t.total_query),
        window: pick(&c.window, &t.window),
        step: pick(&c.step, &t.step),
    }
}
