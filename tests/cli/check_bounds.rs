//! Values that used to be accepted and then silenced the logs, panicked the daemon or failed
//! every analysis (issue 16, point 8), each refused up front by `canaryd check` as a user runs
//! it, with file:line:column and the bound. Each test is named after the mistake it pins.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The 1-based line and the column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the file"));
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// A temporary config (the shipped one, edited, its `rules_dir` holding the good fixture) and
/// rule file (the good fixture, edited).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::copy(
            root().join("tests/fixtures/rules/good/web.toml"),
            dir.path().join("rules/web.toml"),
        )
        .unwrap();
        Files { dir }
    }

    fn config(&self, from: &str, to: &str) -> (PathBuf, String) {
        let shipped = std::fs::read_to_string(root().join("config/canaryd.toml")).unwrap();
        assert!(shipped.contains(from), "{from} not in the shipped config");
        let text = shipped.replacen(from, to, 1).replace(
            "/etc/canaryd/rules",
            &self.dir.path().join("rules").display().to_string(),
        );
        let path = self.dir.path().join("canaryd.toml");
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    fn rule(&self, from: &str, to: &str) -> (PathBuf, String) {
        let good =
            std::fs::read_to_string(root().join("tests/fixtures/rules/good/web.toml")).unwrap();
        assert!(good.contains(from), "{from} not in web.toml");
        let text = good.replacen(from, to, 1);
        let path = self.dir.path().join("web.toml");
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    fn check(&self, config: &Path, rules: &[&Path]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["check", "--config"])
            .arg(config)
            .args(rules)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn shipped_config(&self) -> PathBuf {
        self.config("level = \"info\"", "level = \"info\"").0
    }
}

/// `check` exits 1 and says `path:line:col: error: ...{words}` at `needle`.
fn assert_refused_at(out: &Output, path: &Path, text: &str, needle: &str, words: &[&str]) {
    let printed = stdout(out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let (line, column) = position(text, needle);
    let at = format!("{}:{line}:{column}: error: ", path.display());
    let found = printed
        .split("\n")
        .find(|l| l.starts_with(&at))
        .unwrap_or_else(|| panic!("nothing at {at} in\n{printed}"));
    let with_hint = &printed[printed.find(found).unwrap()..];
    let with_hint: String = with_hint.lines().take(2).collect::<Vec<_>>().join("\n");
    for w in words {
        assert!(with_hint.contains(w), "{w:?} missing from\n{with_hint}");
    }
}

#[test]
fn log_level_eror_which_silenced_every_line_is_refused_naming_the_levels() {
    let files = Files::new();
    let (config, text) = files.config("level = \"info\"", "level = \"eror\"");
    let out = files.check(&config, &[]);
    assert_refused_at(
        &out,
        &config,
        &text,
        "\"eror\"",
        &[
            "`eror` is not a log level",
            "did you mean `error`?",
            "`warn`",
            "`off`",
        ],
    );
    // A module's level is still allowed, and so are the plain levels.
    for good in [
        "\"canaryd=debug,info\"",
        "\"WARN\"",
        "\"off\"",
        "\"tower=warn, debug\"",
    ] {
        let (config, _) = files.config("level = \"info\"", &format!("level = {good}"));
        let out = files.check(&config, &[]);
        assert_eq!(out.status.code(), Some(0), "{good}: {}", stdout(&out));
    }
}

#[test]
fn max_concurrent_queries_near_2_pow_63_is_refused_instead_of_panicking_serve() {
    let files = Files::new();
    let (config, text) = files.config(
        "max_concurrent_queries = 8",
        "max_concurrent_queries = 9223372036854775807",
    );
    let out = files.check(&config, &[]);
    assert_refused_at(
        &out,
        &config,
        &text,
        "9223372036854775807",
        &["max_concurrent_queries", "1 to 1024"],
    );
    // `serve` refuses it the same way: exit 1 with the problem, not a panic.
    let served = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert_eq!(served.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 to 1024"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_window_of_99999999d_which_panicked_every_analysis_is_refused_with_the_longest_allowed() {
    let files = Files::new();
    let config = files.shipped_config();
    let (rule, text) = files.rule("window = \"5m\"", "window = \"99999999d\"");
    let out = files.check(&config, &[&rule]);
    assert_refused_at(
        &out,
        &rule,
        &text,
        "\"99999999d\"",
        &["`99999999d`", "365d"],
    );
}

#[test]
fn every_duration_key_is_bounded_in_rules_and_in_the_config() {
    let files = Files::new();
    let config = files.shipped_config();
    for (from, to) in [
        ("warmup = \"1m\"", "warmup = \"366d\""),
        ("min_duration = \"5m\"", "min_duration = \"400d\""),
        (
            "min_duration = \"10m\"",
            "min_duration = \"1m\"\nmax_duration = \"9999d\"",
        ),
    ] {
        let (rule, text) = files.rule(from, to);
        let value = to.rsplit('=').next().unwrap().trim();
        let out = files.check(&config, &[&rule]);
        assert_refused_at(&out, &rule, &text, value, &["365d"]);
    }
    // In the config too; inside a `kind`-tagged table serde knows only the table's position.
    let (config, text) = files.config("timeout = \"10s\"", "timeout = \"99999999d\"");
    let out = files.check(&config, &[]);
    assert_refused_at(
        &out,
        &config,
        &text,
        "[sources.prometheus]",
        &["`99999999d`", "365d"],
    );
}

#[test]
fn a_window_of_more_points_than_prometheus_answers_is_refused_naming_window_step_and_limit() {
    let files = Files::new();
    let config = files.shipped_config();
    let (rule, text) = files.rule(
        "window = \"5m\"\n\n[[checks]]",
        "window = \"1d\"\nstep = \"1s\"\n\n[[checks]]",
    );
    let out = files.check(&config, &[&rule]);
    assert_refused_at(
        &out,
        &rule,
        &text,
        "\"1s\"",
        &[
            "window 1d",
            "step 1s",
            "86401 points",
            "11000",
            "at least 8s",
        ],
    );
    // At the limit it is fine: 10,999 steps plus the first point.
    let (rule, _) = files.rule(
        "window = \"5m\"\n\n[[checks]]",
        "window = \"10999s\"\nstep = \"1s\"\n\n[[checks]]",
    );
    let out = files.check(&config, &[&rule]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn weights_and_tolerances_that_overflow_the_score_are_refused() {
    let files = Files::new();
    let config = files.shipped_config();
    for (from, to, needle, words) in [
        (
            "critical = true",
            "critical = true\nweight = 1e308",
            "1e308",
            &["weight", "at most 1000000"][..],
        ),
        (
            "events = [\"rolled-back\", \"paused\"]",
            "events = [\"rolled-back\", \"paused\"]\n\n[scoring.groups]\ndefault = 1e308",
            "1e308",
            &["scoring group", "at most 1000000"][..],
        ),
        (
            "tolerance = 0.1",
            "tolerance = 1e300",
            "1e300",
            &["tolerance", "at most 1000"][..],
        ),
    ] {
        let (rule, text) = files.rule(from, to);
        let out = files.check(&config, &[&rule]);
        assert_refused_at(&out, &rule, &text, needle, words);
    }
}

#[test]
fn a_rule_or_config_file_over_16_mib_is_refused_instead_of_read_whole() {
    let files = Files::new();
    let config = files.shipped_config();
    // Sparse: 17 MiB of zero bytes that take no disk space.
    let huge = files.dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let out = files.check(&config, &[&huge]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("huge.toml"), "{stderr}");
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
    let out = files.check(&huge, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot read config"), "{stderr}");
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
}
