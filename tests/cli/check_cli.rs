//! `canaryd check` as a user runs it: the real binary on the shipped rules and on fixtures
//! with one known mistake each (`tests/fixtures/rules/bad/`), whose `# expect:` lines give the
//! position and words that must be printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .current_dir(root())
        .arg("check")
        .arg("--config")
        .arg("config/canaryd.toml")
        .args(args)
        .output()
        .expect("run canaryd")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `# expect: line:col: error: text` lines of a fixture; `\n` stands for a newline.
fn expectations(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| e.replace("\\n", "\n"))
        .collect()
}

fn assert_reports(target: &Path, file: &Path) {
    let expected = expectations(&root().join(file));
    assert!(
        !expected.is_empty(),
        "{} has no `# expect:` line",
        file.display()
    );
    let out = check(&[target]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}: {text}", file.display());
    for e in &expected {
        let want = format!("{}:{e}", file.display());
        assert!(text.contains(&want), "expected\n{want}\nin\n{text}");
    }
}

#[test]
fn each_bad_fixture_reports_its_mistake_at_its_position() {
    let dir = Path::new("tests/fixtures/rules/bad");
    let mut count = 0;
    for entry in std::fs::read_dir(root().join(dir)).unwrap() {
        let name = entry.unwrap().file_name();
        let path = dir.join(&name);
        if path.extension().is_some_and(|x| x == "toml") {
            assert_reports(&path, &path);
            count += 1;
        }
    }
    assert!(count >= 20, "only {count} fixtures");
}

#[test]
fn three_mistakes_in_one_file_are_all_reported() {
    let file = Path::new("tests/fixtures/rules/bad/three-mistakes.toml");
    assert_eq!(expectations(&root().join(file)).len(), 3);
    assert_reports(file, file);
    assert!(stdout(&check(&[file])).ends_with("1 rule file checked, 3 problems in 1 file\n"));
}

#[test]
fn a_rollout_name_used_by_two_files_is_reported_in_the_second() {
    let dir = Path::new("tests/fixtures/rules/bad/duplicate-rollout");
    assert_reports(dir, &dir.join("b.toml"));
    assert!(stdout(&check(&[dir])).ends_with("2 rule files checked, 1 problem in 1 file\n"));
}

#[test]
fn the_shipped_rules_pass() {
    let out = check(&[Path::new("rules")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Warnings (a last stage no check can judge) may be printed; problems may not.
    assert!(text.contains("rule files checked, no problems"), "{text}");
    assert!(!text.contains(": error:"), "{text}");
}

#[test]
fn a_good_file_reports_nothing() {
    let out = check(&[Path::new("tests/fixtures/rules/good/web.toml")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "1 rule file checked, no problems\n");
}

#[test]
fn several_paths_are_checked_together() {
    let out = check(&[
        Path::new("tests/fixtures/rules/good"),
        Path::new("tests/fixtures/rules/bad/no-stages.toml"),
        Path::new("tests/fixtures/rules/bad/no-checks.toml"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).ends_with("3 rule files checked, 2 problems in 2 files\n"));
}

#[test]
fn unreadable_inputs_are_usage_errors() {
    let out = check(&[Path::new("tests/fixtures/rules/nonexistent.toml")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent.toml"));

    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .current_dir(root())
        .args(["check", "--config", "no/such/canaryd.toml", "rules"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config no/such/canaryd.toml")
    );
}

#[test]
fn without_a_config_names_are_not_checked_and_that_is_said() {
    if Path::new("/etc/canaryd/canaryd.toml").exists() {
        return; // The default config exists on this machine; this case cannot be set up.
    }
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .current_dir(root())
        .args(["check", "tests/fixtures/rules/bad/unknown-receiver.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("names are not checked"));
}

/// The example rule file in the README is one users copy: it must stay valid.
#[test]
fn the_readme_example_rule_file_is_valid() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + "```toml\n".len();
    let len = readme[start..].find("```").expect("the block ends");
    let dir = std::env::temp_dir().join(format!("canaryd-readme-rule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("readme-example.toml");
    std::fs::write(&file, &readme[start..start + len]).unwrap();
    let out = check(&[&file]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // No warning either: it is what users copy.
    assert_eq!(stdout(&out), "1 rule file checked, no problems\n");
}

#[test]
fn the_config_is_checked_like_serve_checks_it_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canaryd.toml");
    let shipped = std::fs::read_to_string(root().join("config/canaryd.toml")).unwrap();
    let text = shipped
        .replace("backend_error_limit = 3", "backend_error_limit = 0")
        .replace("url = \"http://127.0.0.1:9090\"", "url = \"not a url\"");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .current_dir(root())
        .args(["check", "--config"])
        .arg(&config)
        .arg("tests/fixtures/rules/good/web.toml")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text_out = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text_out}");
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let want = format!(
        "{}:{}:23: error: `scheduler.backend_error_limit` must be at least 1",
        config.display(),
        line_of("backend_error_limit")
    );
    assert!(text_out.contains(&want), "expected\n{want}\nin\n{text_out}");
    let header = format!(
        "{}:{}:10: error: [sources.prometheus]",
        config.display(),
        line_of("[sources.prometheus]")
    );
    assert!(
        text_out.contains(&header),
        "expected\n{header}\nin\n{text_out}"
    );
    assert!(
        text_out.ends_with("1 rule file checked, 2 problems in 1 file\n"),
        "{text_out}"
    );
}

#[test]
fn a_last_stage_at_100_that_no_check_can_judge_is_a_warning_and_exit_0() {
    let file = Path::new("tests/fixtures/rules/warn/last-stage-unjudged.toml");
    let expected = expectations(&root().join(file));
    assert_eq!(expected.len(), 1);
    let out = check(&[file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let want = format!("{}:{}", file.display(), expected[0]);
    assert!(text.contains(&want), "expected\n{want}\nin\n{text}");
    assert!(
        text.ends_with("1 rule file checked, no problems, 1 warning\n"),
        "{text}"
    );

    // One check that judges the canary alone is enough: no warning.
    let dir = tempfile::tempdir().unwrap();
    let judged = dir.path().join("judged.toml");
    let with_absolute = std::fs::read_to_string(root().join(file)).unwrap()
        + "\n[[checks]]\nname = \"error-ceiling\"\nkind = \"error-rate-absolute\"\nthreshold = 0.05\n\
           errors_query = 'sum(increase(e{ {{label}}=\"{{side}}\" }[{{step}}]))'\n\
           total_query = 'sum(increase(t{ {{label}}=\"{{side}}\" }[{{step}}]))'\nwindow = \"5m\"\n";
    std::fs::write(&judged, with_absolute).unwrap();
    let out = check(&[&judged]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "1 rule file checked, no problems\n");
}
