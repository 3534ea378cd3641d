//! The layering of `src/`: the arrows between modules go one way, and no sibling modules depend
//! on each other in a circle.
//!
//! - **Layers.** Faces (`api`, `web`, `cli`) may use the daemon; the daemon the edges (config,
//!   metric sources, store, actuators, notifiers, tokens, systemd, logging, the simulator); the
//!   edges the pure core (statistics, judge, rules, rollout, assignment, backoff). A top-level
//!   module that imports one in a higher layer fails the test, naming the import (file:line).
//!   Modules of one layer may use each other, but not in a circle.
//! - **Siblings.** A `crate::`/`super::` dependency between two files is an edge between the
//!   sibling modules holding them (a `mod.rs` and the files below it are exempt: that is the
//!   re-export pattern); siblings that reach each other in a circle fail the test, naming one
//!   import per edge.
//!
//! Test code (`#[cfg(test)]` items, `tests.rs`, `*_tests.rs`) is left out: a test may reach
//! anywhere. The reading is lexical (comments, strings and char literals blanked out, `use`
//! groups expanded), which is all `crate::` and `super::` paths need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, highest first; every top-level module of `src/` must be in one.
const LAYERS: &[(&str, &[&str])] = &[
    ("faces", &["api", "web", "cli"]),
    ("daemon", &["daemon", "replay"]),
    (
        "edges",
        &[
            "config", "source", "store", "actuator", "notify", "tokens", "systemd", "logging",
            "sim", "clock",
        ],
    ),
    (
        "core",
        &[
            "stats", "judge", "rules", "rollout", "assign", "backoff", "markup", "redact",
            "readout",
        ],
    ),
];

/// Sibling cycles tolerated for now: none. An entry is the exact set of modules of one cycle;
/// the test fails on an entry that no longer matches a cycle, so the list cannot go stale.
const ALLOWED_CYCLES: &[&[&str]] = &[];

/// A module backed by a file: its path below `src/` (`daemon/runner` for
/// `src/daemon/runner.rs`, `daemon` for `src/daemon/mod.rs`, empty for `src/lib.rs`).
type Module = Vec<String>;

/// Where an import is: the file (relative to the crate) and its line.
#[derive(Debug, Clone)]
struct At {
    file: String,
    line: usize,
    path: String,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}`", self.file, self.line, self.path)
    }
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".to_string()
    } else {
        m.join("/")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a file.

/// `src` with comments, string literals and char literals replaced by spaces (newlines kept, so
/// byte offsets give the same lines).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"..." or r#"..."#, possibly b-prefixed.
            let open = b[i..].iter().position(|&c| c == b'"').unwrap() + i;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = b[open + 1..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| open + 1 + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', '"') or a lifetime ('a): only the former is
            // blanked.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 3 + p)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// At `i`, the number of `#` of a raw string literal starting there (`r"`, `r#"`, `br"`...).
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `code` (already [`code_only`]) with every `#[cfg(test)]` item blanked out.
fn without_tests(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = b.to_vec();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let start = from + p;
        let mut j = start + "#[cfg(test)]".len();
        // The item ends at its first `;` outside braces, or at the brace closing its body.
        let mut depth = 0usize;
        while j < b.len() {
            match b[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        for c in &mut out[start..j.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = j.min(b.len());
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// Reads paths and `use` trees from cleaned code.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.b[self.i..].starts_with(token.as_bytes()) {
            self.i += token.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.b.len() && is_ident(self.b[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
    }

    /// A use tree (or a plain path) after `base::`; every full path it names goes to `out`.
    fn tree(&mut self, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
        loop {
            if self.eat("{") {
                loop {
                    if self.eat("}") || self.i >= self.b.len() {
                        return;
                    }
                    self.tree(path.clone(), out);
                    self.eat(",");
                }
            }
            if self.eat("*") {
                out.push(path);
                return;
            }
            let before = self.i;
            match self.ident() {
                Some(id) if id == "self" => {}
                Some(id) => path.push(id),
                None => {
                    self.i = before;
                    out.push(path);
                    return;
                }
            }
            let before = self.i;
            if self.eat("::") && !self.eat("<") {
                continue;
            }
            self.i = before;
            // `as NAME` renames the last segment; the path is the same.
            if self.ident().as_deref() == Some("as") {
                self.ident();
            } else {
                self.i = before;
            }
            out.push(path);
            return;
        }
    }
}

/// Every `crate::` and `super::` path in `code` (cleaned) of module `module`, with the line
/// it starts on (a `mod.rs` or `lib.rs` stands for its directory's module).
fn imports(code: &str, module: &[String]) -> Vec<(usize, Vec<String>, String)> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut r = Reader { b, i };
        let word = r.ident().unwrap_or_default();
        // `pub(in crate::a)` names where an item is visible, not a dependency.
        let before = code[..i].trim_end().as_bytes();
        let preceded_by_in =
            before.ends_with(b"in") && (before.len() == 2 || !is_ident(before[before.len() - 3]));
        let base: Option<Vec<String>> = match word.as_str() {
            "crate" => Some(Vec::new()),
            "super" => {
                let mut base = module.to_vec();
                base.pop();
                let mut probe = Reader { b, i: r.i };
                while probe.eat("::") && probe.ident().as_deref() == Some("super") {
                    base.pop();
                    r.i = probe.i;
                }
                Some(base)
            }
            _ => None,
        };
        match base {
            Some(base) if !preceded_by_in && r.eat("::") => {
                let mut paths = Vec::new();
                r.tree(base, &mut paths);
                let line = code[..i].matches('\n').count() + 1;
                let text = code[i..r.i]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                for p in paths {
                    found.push((line, p, text.clone()));
                }
                i = r.i.max(i + 1);
            }
            _ => i = r.i.max(i + 1),
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The crate's graph.

struct Graph {
    /// Module -> module it imports -> where (the first such import).
    edges: BTreeMap<Module, BTreeMap<Module, At>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn is_test_file(m: &[String]) -> bool {
    m.iter().any(|p| p == "tests") || m.last().is_some_and(|p| p.ends_with("tests"))
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // `main.rs` is the binary's crate root: its `crate::` is not the library's.
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let resolve = |path: &[String]| -> Option<Module> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
    };
    let mut edges: BTreeMap<Module, BTreeMap<Module, At>> = BTreeMap::new();
    for (module, file) in &modules {
        if is_test_file(module) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = without_tests(&code_only(&text));
        let shown = Path::new("src").join(file.strip_prefix(src).unwrap());
        for (line, path, written) in imports(&code, module) {
            let Some(target) = resolve(&path) else {
                continue;
            };
            if target == *module || target.is_empty() {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(target)
                .or_insert_with(|| At {
                    file: shown.display().to_string(),
                    line,
                    path: written,
                });
        }
    }
    Graph { edges }
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles<N: Ord + Clone>(nodes: &BTreeSet<N>, next: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct Walk<'a, N> {
        next: &'a BTreeMap<N, BTreeSet<N>>,
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on: BTreeSet<N>,
        found: Vec<Vec<N>>,
    }
    impl<N: Ord + Clone> Walk<'_, N> {
        fn visit(&mut self, v: &N) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on.insert(v.clone());
            for w in self.next.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.on.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(&w);
                    let done = w == *v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut walk = Walk {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

fn layer_of(top: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, members))| members.contains(&top))
        .map(|(i, (layer, _))| (i, *layer))
}

/// Every layering problem of `g`, one sentence each.
fn layer_problems(g: &Graph) -> Vec<String> {
    let mut problems = Vec::new();
    let mut top: BTreeMap<String, BTreeMap<String, At>> = BTreeMap::new();
    let mut unplaced = BTreeSet::new();
    for (from, targets) in &g.edges {
        for (to, at) in targets {
            let (Some(a), Some(b)) = (from.first(), to.first()) else {
                continue;
            };
            for m in [a, b] {
                if layer_of(m).is_none() {
                    unplaced.insert(m.clone());
                }
            }
            if a != b {
                top.entry(a.clone())
                    .or_default()
                    .entry(b.clone())
                    .or_insert_with(|| at.clone());
            }
        }
    }
    for m in unplaced {
        problems.push(format!(
            "the top-level module `{m}` is in no layer: add it to LAYERS in tests/core/layering.rs"
        ));
    }
    for (a, targets) in &top {
        for (b, at) in targets {
            let (Some((la, na)), Some((lb, nb))) = (layer_of(a), layer_of(b)) else {
                continue;
            };
            if lb < la {
                problems.push(format!(
                    "{at}: `{a}` ({na}) imports `{b}` ({nb}), a higher layer; the arrows go \
                     faces -> daemon -> edges -> core"
                ));
            }
        }
    }
    let nodes: BTreeSet<String> = top
        .iter()
        .flat_map(|(a, t)| std::iter::once(a.clone()).chain(t.keys().cloned()))
        .collect();
    let next: BTreeMap<String, BTreeSet<String>> = top
        .iter()
        .map(|(a, t)| (a.clone(), t.keys().cloned().collect()))
        .collect();
    for comp in cycles(&nodes, &next) {
        let mut lines = vec![format!(
            "the top-level modules {} import each other in a circle:",
            comp.join(", ")
        )];
        for a in &comp {
            for (b, at) in &top[a] {
                if comp.contains(b) {
                    lines.push(format!("    {a} -> {b} at {at}"));
                }
            }
        }
        problems.push(lines.join("\n"));
    }
    problems
}

/// Every cycle between sibling modules of `g` that the allow-list does not name, and every
/// allow-list entry that names no cycle. An import from file `a` of file `b` is an edge between
/// the two siblings that hold them (`daemon/runner/world` -> `daemon/scheduler` is
/// `daemon/runner` -> `daemon/scheduler`); one inside the other (a `mod.rs` and the files below
/// it) is no edge. Top-level modules are left to [`layer_problems`].
fn cycle_problems(g: &Graph, allowed: &[&[&str]]) -> Vec<String> {
    let mut nodes = BTreeSet::new();
    let mut next: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut first: BTreeMap<(Module, Module), At> = BTreeMap::new();
    for (a, targets) in &g.edges {
        for (b, at) in targets {
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            if common == 0 || common == a.len() || common == b.len() {
                continue;
            }
            let (a, b) = (a[..=common].to_vec(), b[..=common].to_vec());
            nodes.insert(a.clone());
            nodes.insert(b.clone());
            next.entry(a.clone()).or_default().insert(b.clone());
            first.entry((a, b)).or_insert_with(|| at.clone());
        }
    }
    let found = cycles(&nodes, &next);
    let names = |comp: &[Module]| -> BTreeSet<String> { comp.iter().map(|m| name(m)).collect() };
    let allowed: Vec<BTreeSet<String>> = allowed
        .iter()
        .map(|c| c.iter().map(ToString::to_string).collect())
        .collect();
    let mut problems = Vec::new();
    for comp in &found {
        if allowed.contains(&names(comp)) {
            continue;
        }
        let mut lines = vec![format!(
            "the modules {} depend on each other in a circle:",
            comp.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
        )];
        for a in comp {
            for b in next.get(a).into_iter().flatten() {
                if comp.contains(b) {
                    let at = &first[&(a.clone(), b.clone())];
                    lines.push(format!("    {} -> {} at {at}", name(a), name(b)));
                }
            }
        }
        problems.push(lines.join("\n"));
    }
    for entry in &allowed {
        if !found.iter().any(|comp| names(comp) == *entry) {
            problems.push(format!(
                "ALLOWED_CYCLES names {{{}}}, which is no longer a cycle: remove it from the list",
                entry.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_one_in_a_higher_layer_and_top_level_modules_form_no_circle() {
    let problems = layer_problems(&graph(&src()));
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_sibling_modules_depend_on_each_other_in_a_circle() {
    let problems = cycle_problems(&graph(&src()), ALLOWED_CYCLES);
    assert!(
        problems.is_empty(),
        "dependency cycles:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The checker's own cases, on a crate written out in a temporary directory.

fn write_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn module(text: &str) -> Module {
    text.split('/').map(ToString::to_string).collect()
}

#[test]
fn use_trees_super_paths_and_generic_paths_are_read_and_comments_strings_and_tests_are_not() {
    let text = r##"
use crate::{store::{Store, StoreError}, rules::RolloutRule as Rule, self};
use super::super::stats::*;
// use crate::api::Nothing;
/* crate::web::Nothing /* nested */ crate::web::Still */
const URL: &str = "http://x crate::cli::Nothing";
const RAW: &str = r#"crate::cli::Raw "quoted""#;
const QUOTE: char = '"';
fn f<'a>(x: &'a str) -> crate::judge::Verdict { crate::backoff::Backoff::<u8>::new() }
pub(in crate::daemon) fn g() {}
#[cfg(test)]
mod tests { use crate::api::Test; fn h() { { crate::web::Test } } }
#[cfg(test)]
use crate::cli::TestOnly;
"##;
    let code = without_tests(&code_only(text));
    let found: BTreeSet<(usize, String)> = imports(&code, &module("daemon/runner/world"))
        .into_iter()
        .map(|(line, path, _)| (line, path.join("::")))
        .collect();
    let want: BTreeSet<(usize, String)> = [
        (2, "store::Store"),
        (2, "store::StoreError"),
        (2, "rules::RolloutRule"),
        (2, ""),
        (3, "daemon::stats"),
        (9, "judge::Verdict"),
        (9, "backoff::Backoff"),
    ]
    .into_iter()
    .map(|(l, p)| (l, p.to_string()))
    .collect();
    assert_eq!(found, want);
}

#[test]
fn an_import_of_a_higher_layer_is_named_with_its_file_and_line() {
    let dir = write_crate(&[
        ("lib.rs", "pub mod api;\npub mod config;\npub mod stats;\n"),
        ("api/mod.rs", "use crate::stats::mean;\n"),
        (
            "config/mod.rs",
            "use crate::stats;\n\nfn f() { crate::api::auth::load(); }\n",
        ),
        ("stats.rs", "pub fn mean() {}\n"),
        ("main.rs", "use crate::web::Anything;\n"),
    ]);
    let problems = layer_problems(&graph(dir.path()));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "src/config/mod.rs:3: `crate::api::auth::load`: `config` (edges) imports `api` \
             (faces), a higher layer"
        ),
        "{}",
        problems[0]
    );
}

#[test]
fn a_module_in_no_layer_and_a_circle_within_a_layer_are_reported() {
    let dir = write_crate(&[
        ("lib.rs", ""),
        ("store/mod.rs", "use crate::notify::Outbox;\n"),
        ("notify/mod.rs", "use crate::store::Store;\n"),
        ("extras.rs", "use crate::stats::mean;\n"),
        ("stats.rs", ""),
    ]);
    let problems = layer_problems(&graph(dir.path()));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("`extras` is in no layer"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("notify, store import each other in a circle")
            && problems[1].contains("notify -> store at src/notify/mod.rs:1")
            && problems[1].contains("store -> notify at src/store/mod.rs:1"),
        "{}",
        problems[1]
    );
}

#[test]
fn sibling_files_in_a_circle_fail_unless_allowed_and_a_stale_allowance_fails_too() {
    let dir = write_crate(&[
        ("lib.rs", ""),
        ("daemon/mod.rs", "pub mod a;\npub mod b;\nuse a::X;\n"),
        ("daemon/a.rs", "use super::b::Y;\nuse super::Shared;\n"),
        ("daemon/b.rs", "\nfn f() { super::a::X }\n"),
        ("daemon/tests.rs", "use super::a::X;\n"),
    ]);
    let g = graph(dir.path());
    let problems = cycle_problems(&g, &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("daemon/a, daemon/b depend on each other in a circle")
            && problems[0].contains("daemon/a -> daemon/b at src/daemon/a.rs:1: `super::b::Y`")
            && problems[0].contains("daemon/b -> daemon/a at src/daemon/b.rs:2: `super::a::X`"),
        "{}",
        problems[0]
    );
    assert!(cycle_problems(&g, &[&["daemon/a", "daemon/b"]]).is_empty());
    let stale = cycle_problems(&g, &[&["daemon/a", "daemon/b"], &["judge/x", "judge/y"]]);
    assert_eq!(stale.len(), 1, "{stale:#?}");
    assert!(stale[0].contains("{judge/x, judge/y}, which is no longer a cycle"));
}

#[test]
fn a_circle_through_a_file_below_a_sibling_is_a_circle_of_the_siblings() {
    let dir = write_crate(&[
        ("lib.rs", ""),
        (
            "daemon/mod.rs",
            "use crate::daemon::runner::world::World;\n",
        ),
        ("daemon/runner.rs", "use super::Shared;\n"),
        (
            "daemon/runner/world.rs",
            "\n\nuse crate::daemon::scheduler::MAILBOX;\n",
        ),
        ("daemon/scheduler.rs", "use super::runner::Runner;\n"),
        ("daemon/status.rs", "use super::runner::world::World;\n"),
    ]);
    let problems = cycle_problems(&graph(dir.path()), &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("daemon/runner, daemon/scheduler depend on each other")
            && problems[0].contains(
                "daemon/runner -> daemon/scheduler at src/daemon/runner/world.rs:3: \
                 `crate::daemon::scheduler::MAILBOX`"
            )
            && problems[0]
                .contains("daemon/scheduler -> daemon/runner at src/daemon/scheduler.rs:1"),
        "{}",
        problems[0]
    );
}
