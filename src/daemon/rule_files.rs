//! Which version of each rule file is in force after a reload: each file stands alone. A file
//! that loads puts its rule in force; a broken one keeps the last good rule it gave (or gives no
//! rollout if it never loaded) and is listed with its problems; a file that is gone takes its
//! rollout out of the set, which its task sees as "pause". Rollout names are decided across
//! files by incumbency: a name stays with the file whose rule runs it (even on that file's last
//! good version), so a newcomer can never take over a running rollout, whatever its file's name;
//! between newcomers, the first in path order wins. Every loser is a broken file like any other.
//! Pure: the files are read by the caller ([`crate::rules::load_each`], and the duplicate's text
//! only to point at its name); it returns the new set and what changed, and changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RuleSet;
use crate::rules::{FileRule, Problem, RolloutRule};

/// A rule file whose current text does not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenFile {
    /// Every problem of its current text (or why it cannot be read), with file:line:col.
    pub problems: Vec<Problem>,
    /// The rollout whose last good rule from this file stays in force; `None` when the file has
    /// never loaded (it runs no rollout).
    pub running: Option<String>,
}

/// How a file broken before is no longer broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// It loads: its rule is in force.
    Loads,
    /// It is gone from the rules directory.
    Gone,
}

/// The outcome of a reload: the set to swap in, and what changed from the running one.
#[derive(Debug)]
pub struct Reloaded {
    pub set: RuleSet,
    /// Rollouts new to the set.
    pub added: Vec<String>,
    /// Rollouts no file defines any more, with the file that did: their tasks pause them.
    pub removed: Vec<(String, PathBuf)>,
    /// Files newly broken, or broken with other problems than at the last reload: alert.
    pub broken: Vec<PathBuf>,
    /// Files broken at the last reload that are not any more.
    pub cleared: Vec<(PathBuf, Cleared)>,
}

/// Put the files of a reload together with the running set `previous`. `duplicate(path, name,
/// holder)` is the problem of file `path` defining rollout `name` that file `holder` keeps
/// (see [`crate::rules::duplicate_name`]).
pub fn merge(
    previous: &RuleSet,
    files: Vec<FileRule>,
    duplicate: impl Fn(&Path, &str, &Path) -> Problem,
) -> Reloaded {
    let last_good: HashMap<&Path, &Arc<RolloutRule>> = previous
        .rules
        .values()
        .map(|r| (r.path.as_path(), r))
        .collect();
    let mut paths = Vec::with_capacity(files.len());
    let mut fresh: Vec<Option<RolloutRule>> = Vec::with_capacity(files.len());
    let mut problems: Vec<Vec<Problem>> = Vec::with_capacity(files.len());
    for file in files {
        match file.parsed {
            Ok(rule) => {
                fresh.push(Some(rule));
                problems.push(Vec::new());
            }
            Err(p) => {
                fresh.push(None);
                problems.push(p);
            }
        }
        paths.push(file.path);
    }
    let mut stale: Vec<Option<Arc<RolloutRule>>> = paths
        .iter()
        .map(|p| last_good.get(p.as_path()).map(|r| Arc::clone(r)))
        .collect();
    // What each file offers: its fresh rule, or else (broken) its last good one.
    let name_of =
        |i: usize, fresh: &[Option<RolloutRule>], stale: &[Option<Arc<RolloutRule>>]| match (
            &fresh[i], &stale[i],
        ) {
            (Some(rule), _) => Some(rule.name.clone()),
            (None, Some(rule)) => Some(rule.name.clone()),
            (None, None) => None,
        };
    let incumbent = |name: &str, path: &Path| {
        previous
            .rules
            .get(name)
            .is_some_and(|r| r.path.as_path() == path)
    };
    // A file that loses a name falls back to its own last good rule, under its old name, which
    // it holds as the incumbent: each pass rejects at least one fresh rule, so this ends.
    let winners = loop {
        let mut winners: BTreeMap<String, usize> = BTreeMap::new();
        let mut losers: Vec<(usize, String, usize)> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let Some(name) = name_of(i, &fresh, &stale) else {
                continue;
            };
            match winners.get(&name).copied() {
                None => {
                    winners.insert(name, i);
                }
                Some(j) => {
                    let (keep, lose) = if incumbent(&name, path) {
                        (i, j)
                    } else {
                        (j, i)
                    };
                    winners.insert(name.clone(), keep);
                    losers.push((lose, name, keep));
                }
            }
        }
        if losers.is_empty() {
            break winners;
        }
        for (lose, name, keep) in losers {
            if fresh[lose].take().is_some() {
                problems[lose] = vec![duplicate(&paths[lose], &name, &paths[keep])];
            } else {
                // Two last good rules never share a name (the running set's names are unique),
                // and one always holds it as the incumbent; kept total all the same.
                stale[lose] = None;
            }
        }
    };

    let mut set = RuleSet::default();
    for (name, i) in winners {
        let rule = match (fresh[i].take(), &stale[i]) {
            // An unchanged rule keeps its `Arc`: its task sees no change.
            (Some(rule), Some(old)) if **old == rule => Arc::clone(old),
            (Some(rule), _) => Arc::new(rule),
            (None, Some(old)) => Arc::clone(old),
            (None, None) => continue,
        };
        set.rules.insert(name, rule);
    }
    for (i, path) in paths.iter().enumerate() {
        if problems[i].is_empty() {
            continue;
        }
        let running = stale[i]
            .as_ref()
            .filter(|r| {
                set.rules
                    .get(&r.name)
                    .is_some_and(|kept| Arc::ptr_eq(kept, r))
            })
            .map(|r| r.name.clone());
        let broken = BrokenFile {
            problems: std::mem::take(&mut problems[i]),
            running,
        };
        set.broken.insert(path.clone(), broken);
    }

    let added = set
        .rules
        .keys()
        .filter(|n| !previous.rules.contains_key(*n))
        .cloned()
        .collect();
    let removed = previous
        .rules
        .iter()
        .filter(|(n, _)| !set.rules.contains_key(*n))
        .map(|(n, r)| (n.clone(), r.path.clone()))
        .collect();
    let broken = set
        .broken
        .iter()
        .filter(|(path, now)| {
            previous.broken.get(*path).map(|b| &b.problems) != Some(&now.problems)
        })
        .map(|(path, _)| path.clone())
        .collect();
    let present: std::collections::HashSet<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let cleared = previous
        .broken
        .keys()
        .filter(|path| !set.broken.contains_key(*path))
        .map(|path| {
            let how = if present.contains(path.as_path()) {
                Cleared::Loads
            } else {
                Cleared::Gone
            };
            (path.clone(), how)
        })
        .collect();
    Reloaded {
        set,
        added,
        removed,
        broken,
        cleared,
    }
}

#[cfg(test)]
mod tests;
