//! Problems found in rule files, and where they are: what a user reads from `canaryd check`.
//!
//! This module owns the `Problem` and `Warning` types, turning byte offsets into line:column, and the
//! "did you mean" suggestions. It reads no files.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A line and column in a file, both counted from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One thing wrong with a rule file: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// `None` when the problem concerns the file as a whole (it cannot be read).
    pub location: Option<Location>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    /// A problem about the whole file, with no position in it.
    pub fn file(path: &Path, message: impl Into<String>) -> Problem {
        Problem {
            path: path.to_path_buf(),
            location: None,
            message: message.into(),
            hint: None,
        }
    }
}

impl Problem {
    /// `path:line:col: LABEL: message` and the hint on the next line.
    fn write(&self, f: &mut fmt::Formatter<'_>, label: &str) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        write!(f, ": {label}: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, "error")
    }
}

/// Something in a valid rule file that loads and runs but most likely not as meant (a last
/// stage that no check can judge): `canaryd check` prints it and still exits 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub Problem);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, "warning")
    }
}

/// One rule file's text, to turn spans into locations.
///
/// The first lookup indexes the text once (line starts, and for non-ASCII text the number of
/// characters before every 4 KiB); each lookup is then a binary search, so
/// reporting one problem per line of a 20,000-stage file costs O(n log n), not O(n²).
#[derive(Debug, Clone)]
pub struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    index: OnceLock<LineIndex>,
}

/// Byte spacing of the character-count checkpoints of a non-ASCII text.
const CHAR_CHECKPOINT: usize = 4096;

#[derive(Debug, Clone)]
struct LineIndex {
    /// The byte offset where each line starts; the first is 0.
    line_starts: Vec<usize>,
    /// For a non-ASCII text, the characters before byte `i * CHAR_CHECKPOINT` (each a char
    /// boundary or the next one after it); empty for ASCII text, where bytes are characters.
    chars_before: Vec<(usize, usize)>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let mut chars_before = Vec::new();
        if !text.is_ascii() {
            let (mut at, mut chars) = (0, 0);
            while at < text.len() {
                chars_before.push((at, chars));
                let mut next = (at + CHAR_CHECKPOINT).min(text.len());
                while !text.is_char_boundary(next) {
                    next += 1;
                }
                chars += text[at..next].chars().count();
                at = next;
            }
        }
        LineIndex {
            line_starts,
            chars_before,
        }
    }

    /// Characters before byte `offset` (a char boundary).
    fn chars_before(&self, text: &str, offset: usize) -> usize {
        if self.chars_before.is_empty() {
            return offset;
        }
        let i = self.chars_before.partition_point(|(at, _)| *at <= offset) - 1;
        let (at, chars) = self.chars_before[i];
        chars + text[at..offset].chars().count()
    }
}

impl<'a> SourceText<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        SourceText {
            path,
            text,
            index: OnceLock::new(),
        }
    }

    /// The line and column of a byte offset (clamped to the text).
    pub fn locate(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let index = self.index.get_or_init(|| LineIndex::new(self.text));
        let line = index.line_starts.partition_point(|start| *start <= offset);
        let line_start = index.line_starts[line - 1];
        let column =
            index.chars_before(self.text, offset) - index.chars_before(self.text, line_start) + 1;
        Location { line, column }
    }

    /// A problem at the start of `span` (or at the top of the file without one).
    pub fn problem(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Problem {
        Problem {
            path: self.path.to_path_buf(),
            location: Some(self.locate(span.map_or(0, |s| s.start))),
            message: message.into(),
            hint,
        }
    }
}

/// The known name closest to `wrong`, if it is close enough to be a likely typo.
pub fn closest<'k>(wrong: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (wrong.chars().count() / 3).max(2);
    let wrong = wrong.to_lowercase();
    known
        .into_iter()
        // Levenshtein distance by characters, ignoring case.
        .map(|k| (strsim::levenshtein(&wrong, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// "`a`, `b`, `c`" for hints.
pub fn list<'k>(names: impl IntoIterator<Item = &'k str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A hint naming the closest known name, or else all of them.
pub fn suggest(wrong: &str, known: &[&str]) -> String {
    match closest(wrong, known.iter().copied()) {
        Some(best) => format!(
            "did you mean `{best}`? known: {}",
            list(known.iter().copied())
        ),
        None => format!("known: {}", list(known.iter().copied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        let src = SourceText::new(Path::new("x.toml"), text);
        assert_eq!(src.locate(0), Location { line: 1, column: 1 });
        assert_eq!(src.locate(6), Location { line: 2, column: 1 });
        // 'é' is two bytes: the '=' after "bé " is the 4th character.
        let eq = text.rfind('=').unwrap();
        assert_eq!(src.locate(eq), Location { line: 2, column: 4 });
        assert_eq!(src.locate(10_000).line, 3);
    }

    #[test]
    fn locations_in_long_non_ascii_text_count_characters_across_checkpoints() {
        // Lines of 3,000 bytes mixing one- and two-byte characters, so that checkpoints fall
        // inside lines and sometimes inside a character.
        let line = format!("{}{}\n", "é".repeat(1000), "x".repeat(1000));
        let text = line.repeat(20);
        let src = SourceText::new(Path::new("x.toml"), &text);
        for l in [0usize, 1, 7, 19] {
            let start = l * line.len();
            assert_eq!(
                src.locate(start),
                Location {
                    line: l + 1,
                    column: 1
                }
            );
            assert_eq!(
                src.locate(start + 2000),
                Location {
                    line: l + 1,
                    column: 1001
                }
            );
            assert_eq!(
                src.locate(start + 2999),
                Location {
                    line: l + 1,
                    column: 2000
                }
            );
            // Inside a two-byte character: its start.
            assert_eq!(
                src.locate(start + 3),
                Location {
                    line: l + 1,
                    column: 2
                }
            );
        }
    }

    #[test]
    fn display_has_path_line_column_and_hint() {
        let src = SourceText::new(Path::new("rules/a.toml"), "x\ny = 1");
        let p = src.problem(Some(2..3), "bad y", Some("fix it".into()));
        assert_eq!(
            p.to_string(),
            "rules/a.toml:2:1: error: bad y\n  hint: fix it"
        );
        let p = Problem::file(Path::new("b.toml"), "cannot read");
        assert_eq!(p.to_string(), "b.toml: error: cannot read");
    }

    #[test]
    fn suggestions_find_typos_but_not_strangers() {
        assert_eq!(
            closest("tolerence", ["tolerance", "threshold"]),
            Some("tolerance")
        );
        assert_eq!(closest("oncall", ["team-email", "pager"]), None);
        assert_eq!(
            suggest("pagr", &["team-email", "pager"]),
            "did you mean `pager`? known: `team-email`, `pager`"
        );
        assert_eq!(
            suggest("oncall", &["team-email", "pager"]),
            "known: `team-email`, `pager`"
        );
        // Distance by characters: "kitten" → "sitting" is 3 edits, too many for a 6-letter
        // word (2 allowed), and the nearest of several names wins, whatever the case.
        assert_eq!(closest("kitten", ["sitting"]), None);
        assert_eq!(closest("kitten", ["sitting", "mitten"]), Some("mitten"));
        assert_eq!(closest("Pagér", ["pager", "pag"]), Some("pager"));
    }
}
