//! The serde shapes of a rule file, exactly as written, with the position of every value.
//!
//! This module owns the first stage of loading: TOML text to `RawRule`, reporting syntax errors,
//! unknown keys (with the closest known key) and values of the wrong type. It checks nothing
//! about meaning: almost every field is optional and names, durations and enum words stay
//! strings, so that `validate` can report every missing or wrong value at once.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::problem::{closest, list};

type S<T> = Option<Spanned<T>>;

/// A whole rule file: one rollout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub rollout: S<RawRollout>,
    pub analysis: S<RawAnalysis>,
    #[serde(default)]
    pub stages: Vec<Spanned<RawStage>>,
    pub targeting: S<RawTargeting>,
    pub sides: S<RawSides>,
    #[serde(default)]
    pub templates: BTreeMap<String, Spanned<RawCheck>>,
    #[serde(default)]
    pub checks: Vec<Spanned<RawCheck>>,
    pub scoring: S<RawScoring>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

/// `[rollout]`: who owns it and what it talks to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub name: S<String>,
    pub team: S<String>,
    pub source: S<String>,
    pub actuator: S<String>,
    pub rollback_to: S<String>,
    pub start: S<String>,
}

/// `[analysis]`: when analyses run and how patient they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub schedule: S<String>,
    pub every: S<String>,
    pub warmup: S<String>,
    pub max_inconclusive: S<i64>,
}

/// One `[[stages]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub name: S<String>,
    pub weight: S<i64>,
    pub min_duration: S<String>,
    pub max_duration: S<String>,
    pub required_passes: S<i64>,
    pub approval: S<bool>,
}

/// `[targeting]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargeting {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub salt: S<String>,
}

/// `[sides]`: what `{{label}}` and `{{side}}` become in queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSides {
    pub label: S<String>,
    pub baseline: S<String>,
    pub canary: S<String>,
}

/// One `[[checks]]` entry, or one `[templates.NAME]` (which may not have `name` or `use`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: S<String>,
    #[serde(rename = "use")]
    pub use_: S<String>,
    pub kind: S<String>,
    pub direction: S<String>,
    pub tolerance: S<f64>,
    pub threshold: S<f64>,
    pub aggregate: S<String>,
    /// `observed` or `statistical`, for the absolute kinds.
    pub test: S<String>,
    pub max_slope_per_minute: S<f64>,
    pub confidence: S<f64>,
    pub min_samples: S<i64>,
    pub no_data: S<String>,
    #[serde(rename = "for")]
    pub for_: S<String>,
    pub consecutive: S<i64>,
    pub action: S<String>,
    pub dry_run: S<bool>,
    pub group: S<String>,
    pub weight: S<f64>,
    pub critical: S<bool>,
    pub query: S<String>,
    pub errors_query: S<String>,
    pub total_query: S<String>,
    pub window: S<String>,
    pub step: S<String>,
}

/// `[scoring]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScoring {
    pub pass: S<f64>,
    pub marginal: S<f64>,
    /// Holm's correction over the analysis's tested checks (default true).
    pub family_wise: S<bool>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<f64>>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub receivers: Vec<Spanned<String>>,
    pub events: Option<Vec<Spanned<String>>>,
    pub min_severity: S<String>,
}

/// A problem of the shape stage, still as a byte span.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeError {
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
}

/// What the shape stage made of a file.
#[derive(Debug)]
pub enum Shape<T = RawRule> {
    /// Parsed; `unknown_keys` were skipped and are reported, but the rest can be validated.
    Parsed {
        raw: Box<T>,
        unknown_keys: Vec<ShapeError>,
    },
    /// Too broken to validate further; every error found.
    Broken(Vec<ShapeError>),
}

/// How many wrong keys or values one file may report before we stop looking.
const MAX_SHAPE_ERRORS: usize = 50;

/// TOML text to `RawRule`, reporting every syntax error, unknown key and wrongly typed value.
///
/// Serde stops at the first error, so after each unknown key or wrong value we remove that entry
/// from the parsed document and deserialize again, collecting errors as we go.
pub fn parse(text: &str) -> Shape {
    parse_as(text)
}

/// [`parse`] into any serde shape: the daemon config's loader reports its file's mistakes the
/// same way, every one at once.
pub fn parse_as<T: DeserializeOwned>(text: &str) -> Shape<T> {
    let (mut doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // Only the first: after a syntax error the parser's recovery guesses, and its later
        // errors ("duplicate key") are often echoes of the first rather than new mistakes.
        return Shape::Broken(
            syntax
                .into_iter()
                .take(1)
                .map(|e| ShapeError {
                    span: e.span(),
                    message: format!("TOML syntax: {}", e.message().trim()),
                    hint: None,
                })
                .collect(),
        );
    }
    let mut errors: Vec<ShapeError> = Vec::new();
    let mut only_unknown_keys = true;
    let mut removed_keys: Vec<String> = Vec::new();
    loop {
        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
        let err = match T::deserialize(Deserializer::from(doc.clone())) {
            Ok(raw) => {
                return if only_unknown_keys {
                    Shape::Parsed {
                        raw: Box::new(raw),
                        unknown_keys: errors,
                    }
                } else {
                    Shape::Broken(errors)
                };
            }
            Err(err) => err,
        };
        let span = err.span();
        // A required key removed for its wrong value is then "missing": an echo, not news.
        let echo = err
            .message()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .is_some_and(|field| removed_keys.iter().any(|k| k == field));
        if echo {
            errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
            return Shape::Broken(errors);
        }
        let described = describe(err.message(), span.clone());
        let unknown = described.1;
        errors.push(described.0);
        only_unknown_keys &= unknown;
        let removed = span.and_then(|s| remove_entry_at(doc.get_mut(), &s));
        let removed = removed.map(|key| removed_keys.push(key)).is_some();
        if !removed || errors.len() >= MAX_SHAPE_ERRORS {
            errors.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
            return Shape::Broken(errors);
        }
    }
}

/// Turn a serde message into a problem; the flag says whether it is an unknown key.
fn describe(message: &str, span: Option<Range<usize>>) -> (ShapeError, bool) {
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = message.strip_prefix("unknown field ")
        && let Some(wrong) = ticked.first()
    {
        let known: Vec<&str> = if rest.contains("there are no fields") {
            Vec::new()
        } else {
            ticked[1..].to_vec()
        };
        let hint = match closest(wrong, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("keys allowed here: {}", list(known.iter().copied())),
        };
        let error = ShapeError {
            span,
            message: format!("unknown key `{wrong}`"),
            hint: Some(hint),
        };
        return (error, true);
    }
    let hint = if message.starts_with("invalid type") {
        Some(
            "check the value's type: text needs quotes (\"5m\"), numbers and true/false do not"
                .into(),
        )
    } else {
        None
    };
    let error = ShapeError {
        span,
        message: message.trim().to_string(),
        hint,
    };
    (error, false)
}

/// Remove the entry whose key or value sits exactly at `span`, anywhere in the document; the
/// removed key's name (empty for an array item).
fn remove_entry_at(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let hit = table
        .iter()
        .find(|(k, v)| k.span() == *span || v.span() == *span)
        .map(|(k, _)| k.get_ref().to_string());
    if let Some(key) = hit {
        table.remove(key.as_str());
        return Some(key);
    }
    table
        .iter_mut()
        .find_map(|(_, value)| remove_in_value(value.get_mut(), span))
}

fn remove_in_value(value: &mut DeValue<'_>, span: &Range<usize>) -> Option<String> {
    match value {
        DeValue::Table(t) => remove_entry_at(t, span),
        DeValue::Array(items) => {
            if items.iter().any(|item| item.span() == *span) {
                let kept = items
                    .iter()
                    .filter(|i| i.span() != *span)
                    .cloned()
                    .collect();
                *items = kept;
                return Some(String::new());
            }
            items
                .iter_mut()
                .find_map(|item| remove_in_value(item.get_mut(), span))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(text: &str) -> Vec<ShapeError> {
        match parse(text) {
            Shape::Broken(errors) => errors,
            Shape::Parsed { .. } => panic!("expected errors for {text}"),
        }
    }

    #[test]
    fn unknown_keys_are_all_reported_with_a_suggestion_and_parsing_goes_on() {
        let text = "[rollout]\nnmae = \"x\"\nteam = \"t\"\n[[checks]]\ntolerence = 0.1\n";
        let Shape::Parsed { raw, unknown_keys } = parse(text) else {
            panic!("unknown keys alone should still parse");
        };
        assert_eq!(unknown_keys.len(), 2);
        assert_eq!(unknown_keys[0].message, "unknown key `nmae`");
        assert_eq!(
            unknown_keys[0].hint.as_deref(),
            Some("did you mean `name`?")
        );
        assert_eq!(unknown_keys[0].span.clone().map(|s| &text[s]), Some("nmae"));
        assert_eq!(
            unknown_keys[1].hint.as_deref(),
            Some("did you mean `tolerance`?")
        );
        let team = raw.rollout.unwrap().into_inner().team.unwrap();
        assert_eq!(team.get_ref(), "t");
        assert_eq!(raw.checks.len(), 1);
    }

    #[test]
    fn wrong_types_are_reported_at_the_value() {
        let text = "[[stages]]\nname = \"a\"\nweight = \"25\"\n[[stages]]\nweight = true\n";
        let errors = broken(text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("invalid type"), "{errors:?}");
        assert_eq!(errors[0].span.clone().map(|s| &text[s]), Some("\"25\""));
        assert_eq!(errors[1].span.clone().map(|s| &text[s]), Some("true"));
    }

    #[test]
    fn syntax_errors_stop_at_the_shape_stage() {
        let errors = broken("[rollout\nname = \"x\"\n");
        assert!(errors[0].message.starts_with("TOML syntax"), "{errors:?}");
        assert!(errors[0].span.is_some());
    }
}
