//! The stages of a rule file and its traffic targeting: `[[stages]]` validated into the plan's
//! `Stage`s (names, weights that only go up, durations, passes, approval) and `[targeting]`
//! into its allow and deny lists and salt.
//!
//! Part of `validate` (the same `Validator`, the same rules: pure, every problem reported with
//! its position and a hint).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::Spanned;

use crate::rollout::{Stage, Targeting};

use super::super::duration;
use super::super::raw::RawRule;
use super::{Span, TOP, Validator};

impl Validator<'_> {
    pub(super) fn stages(&mut self, raw: &RawRule) -> Option<Vec<Stage>> {
        if raw.stages.is_empty() {
            self.err(
                raw.rollout.as_ref().map_or(TOP, Spanned::span),
                "no stages",
                Some("add [[stages]] entries with a name and a weight, e.g. name = \"10%\", weight = 10".into()),
            );
            return None;
        }
        let mut names: BTreeMap<&str, Span> = BTreeMap::new();
        let mut previous: Option<(String, i64)> = None;
        let mut stages = Vec::new();
        let mut ok = true;
        for (i, stage) in raw.stages.iter().enumerate() {
            let at = stage.span();
            let s = stage.get_ref();
            let label = format!("stage {}", i + 1);
            let name = self.need(
                &s.name,
                &at,
                &format!("`name` in {label}"),
                "e.g. name = \"25%\"",
            );
            let weight = self.need(
                &s.weight,
                &at,
                &format!("`weight` in {label}"),
                "the canary's share of traffic, 0 to 100",
            );
            let shown = name.map_or(label.clone(), |n| format!("stage `{}`", n.get_ref()));
            if let Some(name) = name {
                if let Some(first) = names.get(name.get_ref().as_str()) {
                    let first = self.src.locate(first.start);
                    self.err(
                        name.span(),
                        format!("duplicate stage name `{}`", name.get_ref()),
                        Some(format!(
                            "first used at line {}; stage names must be unique",
                            first.line
                        )),
                    );
                } else {
                    names.insert(name.get_ref(), name.span());
                }
            }
            let mut weight_ok = None;
            if let Some(w) = weight {
                let w_val = *w.get_ref();
                if !(0..=100).contains(&w_val) {
                    self.err(
                        w.span(),
                        format!("{shown} has weight {w_val}, outside 0 to 100"),
                        Some("the weight is the canary's percentage of traffic".into()),
                    );
                } else {
                    if let Some((prev_name, prev)) = &previous
                        && w_val <= *prev
                    {
                        self.err(
                            w.span(),
                            format!("stage weights must increase: {shown} has weight {w_val} after {prev}"),
                            Some(format!("stages run in file order; put it before `{prev_name}` or raise its weight")),
                        );
                    }
                    previous = Some((name.map_or(label.clone(), |n| n.get_ref().clone()), w_val));
                    weight_ok = u8::try_from(w_val).ok();
                }
            }
            let min_duration = match &s.min_duration {
                None => Some(Duration::ZERO),
                Some(d) => self.duration(d, "`min_duration`"),
            };
            let max_duration = match &s.max_duration {
                None => Some(None),
                Some(d) => match (self.positive_duration(d, "`max_duration`"), min_duration) {
                    (Some(max), Some(min)) if max < min => {
                        self.err(
                            d.span(),
                            format!(
                                "{shown} has max_duration {} shorter than its min_duration {}",
                                duration::format(max),
                                duration::format(min)
                            ),
                            None,
                        );
                        None
                    }
                    (max, _) => max.map(Some),
                },
            };
            let required_passes = match &s.required_passes {
                None => Some(1),
                Some(n) => self.count(n, "`required_passes`", 1),
            };
            match (name, weight_ok, min_duration, max_duration, required_passes) {
                (
                    Some(name),
                    Some(weight),
                    Some(min_duration),
                    Some(max_duration),
                    Some(required_passes),
                ) => stages.push(Stage {
                    name: name.get_ref().clone(),
                    weight,
                    min_duration,
                    max_duration,
                    required_passes,
                    approval: s.approval.as_ref().is_some_and(|a| *a.get_ref()),
                }),
                _ => ok = false,
            }
        }
        ok.then_some(stages)
    }

    pub(super) fn targeting(&mut self, raw: &RawRule, rollout: Option<&str>) -> Option<Targeting> {
        let Some(t) = &raw.targeting else {
            return Some(Targeting {
                allow: Vec::new(),
                deny: Vec::new(),
                salt: rollout.unwrap_or_default().to_string(),
            });
        };
        let t = t.get_ref();
        let denied: BTreeSet<&str> = t.deny.iter().map(|d| d.get_ref().as_str()).collect();
        for key in &t.allow {
            if denied.contains(key.get_ref().as_str()) {
                self.err(
                    key.span(),
                    format!("`{}` is both allowed and denied", key.get_ref()),
                    Some("a key may be in `allow` or in `deny`, not both".into()),
                );
            }
        }
        let salt = match &t.salt {
            Some(s) if s.get_ref().is_empty() => {
                self.err(
                    s.span(),
                    "`salt` is empty",
                    Some("leave it out to use the rollout name, or pick any fixed text".into()),
                );
                return None;
            }
            Some(s) => s.get_ref().clone(),
            None => rollout.unwrap_or_default().to_string(),
        };
        Some(Targeting {
            allow: t.allow.iter().map(|a| a.get_ref().clone()).collect(),
            deny: t.deny.iter().map(|d| d.get_ref().clone()).collect(),
            salt,
        })
    }
}
