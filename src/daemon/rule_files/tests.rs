//! Tables of reloads: each case is a sequence of rules directories (the first one loaded into an
//! empty set), and what the last reload must give.

use super::*;
use crate::rules::{KnownNames, parse_rule};

/// A rule file as a case writes it.
#[derive(Debug, Clone, Copy)]
enum File {
    /// A valid file defining this rollout.
    Good(&'static str),
    /// A valid file defining this rollout with an edit (another team).
    Edited(&'static str),
    /// A file with a problem.
    Broken,
}
use File::{Broken, Edited, Good};

const RULE: &str = include_str!("../../../rules/checkout-api.toml");

fn rule(path: &str, name: &str, team: &str) -> RolloutRule {
    let mut rule = parse_rule(Path::new(path), RULE, &KnownNames::any()).unwrap();
    rule.path = PathBuf::from(path);
    rule.name = name.to_string();
    rule.team = team.to_string();
    rule
}

fn files(dir: Dir) -> Vec<FileRule> {
    let mut dir = dir.to_vec();
    dir.sort_by_key(|(path, _)| *path);
    dir.into_iter()
        .map(|(path, file)| FileRule {
            path: PathBuf::from(path),
            parsed: match file {
                Good(name) => Ok(rule(path, name, "payments")),
                Edited(name) => Ok(rule(path, name, "search")),
                Broken => Err(vec![Problem::file(Path::new(path), "typo")]),
            },
        })
        .collect()
}

fn duplicate(path: &Path, name: &str, holder: &Path) -> Problem {
    Problem::file(
        path,
        format!(
            "duplicate rollout name `{name}`, kept by {}",
            holder.display()
        ),
    )
}

/// Reload each directory in turn; the last reload's outcome and the set before it.
fn reloads(dirs: &[Dir]) -> (Arc<RuleSet>, Reloaded) {
    let mut running = Arc::new(RuleSet::default());
    let mut last = None;
    for dir in dirs {
        let before = Arc::clone(&running);
        let reloaded = merge(&before, files(dir), duplicate);
        running = Arc::new(RuleSet {
            rules: reloaded.set.rules.clone(),
            broken: reloaded.set.broken.clone(),
        });
        last = Some((before, reloaded));
    }
    last.unwrap()
}

/// What one case expects of its last reload.
struct Expect {
    /// Rollout → the file its rule in force came from, and that rule's team.
    rules: &'static [(&'static str, &'static str, &'static str)],
    /// Broken file → the rollout its last good rule runs.
    broken: &'static [(&'static str, Option<&'static str>)],
    added: &'static [&'static str],
    removed: &'static [(&'static str, &'static str)],
    /// Files alerted on.
    alerts: &'static [&'static str],
    cleared: &'static [(&'static str, Cleared)],
}

const NONE: Expect = Expect {
    rules: &[],
    broken: &[],
    added: &[],
    removed: &[],
    alerts: &[],
    cleared: &[],
};

/// A rules directory: file name and content.
type Dir<'a> = &'a [(&'a str, File)];

#[test]
fn each_rule_file_stands_alone() {
    let cases: Vec<(&str, Vec<Dir>, Expect)> = vec![
        (
            "a new file loads next to a broken one",
            vec![
                &[("a.toml", Good("a"))],
                &[("a.toml", Broken), ("b.toml", Good("b"))],
            ],
            Expect {
                rules: &[("a", "a.toml", "payments"), ("b", "b.toml", "payments")],
                broken: &[("a.toml", Some("a"))],
                added: &["b"],
                alerts: &["a.toml"],
                ..NONE
            },
        ),
        (
            "a file broken again with the same problems alerts once",
            vec![
                &[("a.toml", Good("a"))],
                &[("a.toml", Broken)],
                &[("a.toml", Broken), ("b.toml", Good("b"))],
            ],
            Expect {
                rules: &[("a", "a.toml", "payments"), ("b", "b.toml", "payments")],
                broken: &[("a.toml", Some("a"))],
                added: &["b"],
                ..NONE
            },
        ),
        (
            "a broken file that never loaded runs nothing",
            vec![
                &[("a.toml", Good("a"))],
                &[("a.toml", Good("a")), ("n.toml", Broken)],
            ],
            Expect {
                rules: &[("a", "a.toml", "payments")],
                broken: &[("n.toml", None)],
                alerts: &["n.toml"],
                ..NONE
            },
        ),
        (
            "a fixed file's new rule is in force",
            vec![
                &[("a.toml", Good("a"))],
                &[("a.toml", Broken)],
                &[("a.toml", Edited("a"))],
            ],
            Expect {
                rules: &[("a", "a.toml", "search")],
                cleared: &[("a.toml", Cleared::Loads)],
                ..NONE
            },
        ),
        (
            "a removed file's rollout is removed, even next to a broken file",
            vec![
                &[("a.toml", Good("a")), ("c.toml", Good("c"))],
                &[("a.toml", Broken)],
            ],
            Expect {
                rules: &[("a", "a.toml", "payments")],
                broken: &[("a.toml", Some("a"))],
                removed: &[("c", "c.toml")],
                alerts: &["a.toml"],
                ..NONE
            },
        ),
        (
            "a removed broken file's last good rollout is removed and its problems cleared",
            vec![
                &[("a.toml", Good("a")), ("c.toml", Good("c"))],
                &[("a.toml", Broken), ("c.toml", Good("c"))],
                &[("c.toml", Good("c"))],
            ],
            Expect {
                rules: &[("c", "c.toml", "payments")],
                removed: &[("a", "a.toml")],
                cleared: &[("a.toml", Cleared::Gone)],
                ..NONE
            },
        ),
        (
            "a renamed file keeps its rollout running",
            vec![&[("a.toml", Good("a"))], &[("a2.toml", Edited("a"))]],
            Expect {
                rules: &[("a", "a2.toml", "search")],
                ..NONE
            },
        ),
        (
            "a newcomer cannot take a running rollout, even sorting first",
            vec![
                &[("m.toml", Good("x"))],
                &[("a.toml", Edited("x")), ("m.toml", Good("x"))],
            ],
            Expect {
                rules: &[("x", "m.toml", "payments")],
                broken: &[("a.toml", None)],
                alerts: &["a.toml"],
                ..NONE
            },
        ),
        (
            "a newcomer cannot take a rollout run by a broken file's last good rule",
            vec![
                &[("m.toml", Good("x"))],
                &[("a.toml", Edited("x")), ("m.toml", Broken)],
            ],
            Expect {
                rules: &[("x", "m.toml", "payments")],
                broken: &[("a.toml", None), ("m.toml", Some("x"))],
                alerts: &["a.toml", "m.toml"],
                ..NONE
            },
        ),
        (
            "between newcomers the first in path order wins",
            vec![&[], &[("b.toml", Good("x")), ("a.toml", Edited("x"))]],
            Expect {
                rules: &[("x", "a.toml", "search")],
                broken: &[("b.toml", None)],
                added: &["x"],
                alerts: &["b.toml"],
                ..NONE
            },
        ),
        (
            "a file renaming its rollout to a taken name keeps its last good rollout",
            vec![
                &[("a.toml", Good("x")), ("b.toml", Good("y"))],
                &[("a.toml", Good("x")), ("b.toml", Good("x"))],
            ],
            Expect {
                rules: &[("x", "a.toml", "payments"), ("y", "b.toml", "payments")],
                broken: &[("b.toml", Some("y"))],
                alerts: &["b.toml"],
                ..NONE
            },
        ),
        (
            "a file losing its new name takes its old one back from a newcomer",
            vec![
                &[("a.toml", Good("x")), ("c.toml", Good("z"))],
                &[
                    ("a.toml", Good("z")),
                    ("c.toml", Good("z")),
                    ("n.toml", Edited("x")),
                ],
            ],
            Expect {
                rules: &[("x", "a.toml", "payments"), ("z", "c.toml", "payments")],
                broken: &[("a.toml", Some("x")), ("n.toml", None)],
                alerts: &["a.toml", "n.toml"],
                ..NONE
            },
        ),
        (
            "a file renaming its rollout removes the old name and adds the new",
            vec![&[("a.toml", Good("x"))], &[("a.toml", Good("y"))]],
            Expect {
                rules: &[("y", "a.toml", "payments")],
                added: &["y"],
                removed: &[("x", "a.toml")],
                ..NONE
            },
        ),
    ];
    for (case, dirs, expect) in cases {
        let (_, got) = reloads(&dirs);
        let rules: Vec<(String, String, String)> = got
            .set
            .rules
            .iter()
            .map(|(n, r)| (n.clone(), r.path.display().to_string(), r.team.clone()))
            .collect();
        let want: Vec<(String, String, String)> = expect
            .rules
            .iter()
            .map(|(n, p, t)| (n.to_string(), p.to_string(), t.to_string()))
            .collect();
        assert_eq!(rules, want, "{case}: rules in force");
        let broken: Vec<(String, Option<String>)> = got
            .set
            .broken
            .iter()
            .map(|(p, b)| (p.display().to_string(), b.running.clone()))
            .collect();
        let want: Vec<(String, Option<String>)> = expect
            .broken
            .iter()
            .map(|(p, r)| (p.to_string(), r.map(str::to_string)))
            .collect();
        assert_eq!(broken, want, "{case}: broken files");
        assert_eq!(got.added, expect.added, "{case}: added");
        let removed: Vec<(String, String)> = got
            .removed
            .iter()
            .map(|(n, p)| (n.clone(), p.display().to_string()))
            .collect();
        let want: Vec<(String, String)> = expect
            .removed
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        assert_eq!(removed, want, "{case}: removed");
        let alerts: Vec<String> = got.broken.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(alerts, expect.alerts, "{case}: alerts");
        let cleared: Vec<(String, Cleared)> = got
            .cleared
            .iter()
            .map(|(p, c)| (p.display().to_string(), *c))
            .collect();
        let want: Vec<(String, Cleared)> = expect
            .cleared
            .iter()
            .map(|(p, c)| (p.to_string(), *c))
            .collect();
        assert_eq!(cleared, want, "{case}: cleared");
    }
}

#[test]
fn a_duplicate_is_reported_at_the_newcomer_naming_the_file_that_keeps_the_rollout() {
    let (_, got) = reloads(&[
        &[("m.toml", Good("x"))],
        &[("a.toml", Good("x")), ("m.toml", Good("x"))],
    ]);
    let problems = &got.set.broken[Path::new("a.toml")].problems;
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["a.toml: error: duplicate rollout name `x`, kept by m.toml"]
    );
}

#[test]
fn an_unchanged_or_broken_file_keeps_the_running_rule_itself_and_an_edit_replaces_it() {
    // Its task compares rules by pointer: an unchanged file must not look like an edit.
    let (before, got) = reloads(&[&[("a.toml", Good("a"))], &[("a.toml", Good("a"))]]);
    assert!(Arc::ptr_eq(&before.rules["a"], &got.set.rules["a"]));
    let (before, got) = reloads(&[&[("a.toml", Good("a"))], &[("a.toml", Broken)]]);
    assert!(Arc::ptr_eq(&before.rules["a"], &got.set.rules["a"]));
    let (before, got) = reloads(&[&[("a.toml", Good("a"))], &[("a.toml", Edited("a"))]]);
    assert!(!Arc::ptr_eq(&before.rules["a"], &got.set.rules["a"]));
    assert_eq!(got.set.rules["a"].team, "search");
}

#[test]
fn a_file_with_other_problems_alerts_again() {
    let before = merge(
        &RuleSet::default(),
        files(&[("a.toml", Good("a"))]),
        duplicate,
    )
    .set;
    let once = merge(&before, files(&[("a.toml", Broken)]), duplicate).set;
    let mut other = files(&[("a.toml", Broken)]);
    other[0].parsed = Err(vec![Problem::file(Path::new("a.toml"), "another typo")]);
    let again = merge(&once, other, duplicate);
    assert_eq!(again.broken, [PathBuf::from("a.toml")]);
    assert_eq!(
        again.set.broken_file_of("a").unwrap().0,
        Path::new("a.toml")
    );
}
