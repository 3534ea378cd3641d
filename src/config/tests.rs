//! Unit tests of the daemon config: the shipped file, env overrides, positions of mistakes.

use super::*;

const MINIMAL: &str = r#"
state_dir = "/var/lib/canaryd"
rules_dir = "/etc/canaryd/rules"

[server]
listen = "127.0.0.1:9797"

[sources.prometheus]
kind = "prometheus"
url = "http://127.0.0.1:9090"

[actuators.builtin]
kind = "builtin"

[receivers.pager]
kind = "pagerduty"
routing_key_file = "/etc/canaryd/pagerduty.key"
"#;

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_minimal_config_parses_with_defaults() {
    let c = parse(Path::new("c.toml"), MINIMAL, &no_env()).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9797".parse().unwrap());
    assert_eq!(c.scheduler, SchedulerConfig::default());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.receivers["pager"].kind(), "pagerduty");
    assert!(matches!(
        &c.receivers["pager"],
        crate::notify::ReceiverConfig::Pagerduty(p) if p.routing_key_file.ends_with("pagerduty.key")
    ));
    assert!(matches!(
        c.sources["prometheus"],
        SourceConfig::Prometheus(_)
    ));
}

#[test]
fn unknown_keys_are_reported_with_line_and_column() {
    let text = MINIMAL.replace("[server]\n", "[server]\nlisten_adress = \"x\"\n");
    let err = parse(Path::new("c.toml"), &text, &no_env()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("c.toml:6:1: error:"), "{msg}");
    assert!(msg.contains("listen_adress"), "{msg}");
}

#[test]
fn unknown_keys_inside_a_source_are_reported() {
    let text = MINIMAL.replace("url = ", "timout = \"1s\"\nurl = ");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("c.toml:"), "{msg}");
    assert!(msg.contains("timout"), "{msg}");
}

#[test]
fn syntax_errors_have_positions() {
    let msg = parse(Path::new("c.toml"), "state_dir = \n", &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("c.toml:1:"), "{msg}");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let e = env(&[
        ("CANARYD__SERVER__LISTEN", "127.0.0.1:9999"),
        ("CANARYD__STATE_DIR", "/tmp/elsewhere"),
        ("CANARYD__SCHEDULER__BACKEND_ERROR_LIMIT", "7"),
        ("CANARYD__SOURCES__PROMETHEUS__URL", "http://127.0.0.1:9191"),
        ("CANARYD_EMERGENCY_STOP", "true"),
        ("PATH", "/usr/bin"),
    ]);
    let c = parse(Path::new("c.toml"), MINIMAL, &e).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(c.state_dir, PathBuf::from("/tmp/elsewhere"));
    assert_eq!(c.scheduler.backend_error_limit, 7);
    let SourceConfig::Prometheus(p) = &c.sources["prometheus"];
    assert_eq!(p.url, "http://127.0.0.1:9191");
    assert_eq!(c.receivers["pager"].kind(), "pagerduty");
}

#[test]
fn an_override_with_an_unknown_key_is_an_error_naming_the_variable() {
    let e = env(&[("CANARYD__SERVER__LISTN", "127.0.0.1:1")]);
    let msg = parse(Path::new("c.toml"), MINIMAL, &e)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CANARYD__SERVER__LISTN"), "{msg}");
    assert!(msg.contains("listn"), "{msg}");
}

#[test]
fn validation_reports_every_problem_at_once() {
    let text = format!(
        "{MINIMAL}\n[scheduler]\nmax_concurrent_queries = 0\nbackend_error_limit = 0\n\
         [actuators.lb]\nkind = \"webhook\"\nurl = \"ftp://x\"\n"
    )
    .replace("http://127.0.0.1:9090", "not a url");
    let err = parse(Path::new("c.toml"), &text, &no_env()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problems.len(), 4, "{err}");
    let msg = err.to_string();
    for needle in [
        "max_concurrent_queries",
        "backend_error_limit",
        "[sources.prometheus]",
        "[actuators.lb]",
    ] {
        assert!(msg.contains(needle), "{needle} missing from {msg}");
    }
}

#[test]
fn unknown_receiver_kinds_are_refused() {
    let text = MINIMAL.replace("kind = \"pagerduty\"", "kind = \"carrier-pigeon\"");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("carrier-pigeon"), "{msg}");
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/canaryd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = parse(&path, &text, &no_env()).unwrap();
    assert!(c.server.listen.ip().is_loopback());
    assert!(c.emergency_stop_file.is_some());
}

#[test]
fn validation_problems_point_at_the_key_or_name_the_variable_that_set_it() {
    let text = format!("{MINIMAL}\n[scheduler]\nbackend_error_limit = 0\n");
    let err = parse(Path::new("c.toml"), &text, &no_env()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    let line = text
        .lines()
        .position(|l| l.starts_with("backend_error_limit"))
        .unwrap()
        + 1;
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(
        problems[0].location,
        Some(crate::rules::Location { line, column: 23 })
    );
    // A table's problem points at its header.
    let text = MINIMAL.replace("http://127.0.0.1:9090", "not a url");
    let err = parse(Path::new("c.toml"), &text, &no_env()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("c.toml:8:10: error: [sources.prometheus]"),
        "{msg}"
    );
    // Set from the environment: no position in the file, the variable instead.
    let e = env(&[("CANARYD__SCHEDULER__BACKEND_ERROR_LIMIT", "0")]);
    let err = parse(Path::new("c.toml"), MINIMAL, &e).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("c.toml: error: `scheduler.backend_error_limit` must be at least 1 (set by CANARYD__SCHEDULER__BACKEND_ERROR_LIMIT)"),
        "{msg}"
    );
}

#[test]
fn a_bad_rust_log_is_a_problem_since_it_replaces_the_level() {
    let e = env(&[("RUST_LOG", "canaryd=[")]);
    let msg = parse(Path::new("c.toml"), MINIMAL, &e)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("RUST_LOG"), "{msg}");
}

#[test]
fn log_filters_must_name_known_levels() {
    for good in [
        "info",
        "WARN",
        "off",
        "canaryd=debug,info",
        "canaryd::daemon=trace, warn",
    ] {
        assert_eq!(validate::log_filter(good), Ok(()), "{good}");
    }
    for (bad, word) in [
        ("eror", "`eror` is not a log level"),
        ("canaryd", "`canaryd` is not a log level"),
        ("canaryd=verbose", "`verbose` is not a log level"),
        ("info,warning", "`warning` is not a log level"),
        ("", "empty"),
    ] {
        let (message, hint) = validate::log_filter(bad).unwrap_err();
        assert!(message.contains(word), "{bad}: {message}");
        assert!(
            hint.contains("`trace`, `debug`, `info`, `warn`, `error`, `off`"),
            "{hint}"
        );
    }
}

#[test]
fn every_shape_mistake_is_reported_at_once_with_the_keys_allowed() {
    let text = MINIMAL
        .replace(
            "[server]\n",
            "[server]\nlisten_adress = \"x\"\nreads_need_token = \"yes\"\n",
        )
        .replace("kind = \"builtin\"", "kind = \"builtin\"\nwieght = 3");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = msg.lines().filter(|l| !l.starts_with("  hint")).collect();
    assert_eq!(lines.len(), 3, "{msg}");
    assert!(
        msg.starts_with(
            "c.toml:6:1: error: unknown key `listen_adress`\n  hint: keys allowed here: `listen`,"
        ),
        "{msg}"
    );
    assert!(msg.contains("c.toml:7:20: error: invalid type"), "{msg}");
    assert!(msg.contains("error: unknown key `wieght`"), "{msg}");
    // A wrong value of a required key is reported once, not again as "missing".
    let text = MINIMAL.replace("state_dir = \"/var/lib/canaryd\"", "state_dir = 5");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("c.toml:2:13: error: invalid type"), "{msg}");
    assert!(!msg.contains("missing field"), "{msg}");
}

#[test]
fn problems_never_quote_the_credentials_of_a_url() {
    // A URL with credentials where a number belongs, from the file and from an override.
    let text = MINIMAL.replace(
        "[actuators.builtin]",
        "[scheduler]\nbackend_error_limit = \"http://u:filePw9x@h/?token=fileTok7y\"\n\n[actuators.builtin]",
    );
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected u32"), "{msg}");
    assert!(
        !msg.contains("filePw9x") && !msg.contains("fileTok7y"),
        "{msg}"
    );
    let e = env(&[(
        "CANARYD__SCHEDULER__MAX_CONCURRENT_QUERIES",
        "http://u:envPw9x@h/?token=envTok7y",
    )]);
    let msg = parse(Path::new("c.toml"), MINIMAL, &e)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("CANARYD__SCHEDULER__MAX_CONCURRENT_QUERIES"),
        "{msg}"
    );
    assert!(
        !msg.contains("envPw9x") && !msg.contains("envTok7y"),
        "{msg}"
    );
    // A source's URL refused for its query is quoted masked.
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:9090\"",
        "url = \"http://u:srcPw9x@127.0.0.1:9090/?token=srcTok7y\"",
    );
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("http://u:***@127.0.0.1:9090/?token=***"),
        "{msg}"
    );
}

#[test]
fn retention_has_defaults_and_its_settings_are_read_and_checked_where_written() {
    let c = parse(Path::new("c.toml"), MINIMAL, &no_env()).unwrap();
    assert_eq!(c.retention, RetentionConfig::default());
    assert_eq!(c.retention.keep_all_for, Duration::from_secs(3600));
    assert_eq!(
        c.retention.finished_runs_for,
        Duration::from_secs(7 * 86_400)
    );

    let text = format!(
        "{MINIMAL}\n[retention]\nkeep_all_for = \"2h\"\nkeep_one_per = \"5m\"\nfinished_runs_for = \"3d\"\nprune_every = \"1m\"\n"
    );
    let c = parse(Path::new("c.toml"), &text, &no_env()).unwrap();
    assert_eq!(
        c.retention,
        RetentionConfig {
            keep_all_for: Duration::from_secs(7200),
            keep_one_per: Duration::from_secs(300),
            finished_runs_for: Duration::from_secs(3 * 86_400),
            prune_every: Duration::from_secs(60),
        }
    );

    // An unknown key, with its position.
    let text = format!("{MINIMAL}\n[retention]\nkeep_all = \"2h\"\n");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    let line = text
        .lines()
        .position(|l| l.starts_with("keep_all "))
        .unwrap()
        + 1;
    assert!(
        msg.starts_with(&format!("c.toml:{line}:1: error:")),
        "{msg}"
    );
    assert!(msg.contains("keep_all"), "{msg}");

    // Values that cannot work, every one at once, each at its key.
    let text = format!(
        "{MINIMAL}\n[retention]\nkeep_all_for = \"2d\"\nkeep_one_per = \"0s\"\nfinished_runs_for = \"1d\"\nprune_every = \"1s\"\n"
    );
    let err = parse(Path::new("c.toml"), &text, &no_env()).unwrap_err();
    let problems = err.problems().unwrap();
    assert_eq!(problems.len(), 3, "{err}");
    let at = |key: &str| text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
    for (key, says) in [
        ("keep_one_per", "longer than 0s"),
        ("prune_every", "shorter than 10s"),
        ("finished_runs_for", "shorter than `retention.keep_all_for`"),
    ] {
        let p = problems
            .iter()
            .find(|p| p.message.contains(&format!("`retention.{key}`")))
            .unwrap_or_else(|| panic!("no problem for {key}: {err}"));
        assert!(p.message.contains(says), "{p}");
        assert!(
            p.to_string().starts_with(&format!("c.toml:{}:", at(key))),
            "{p}"
        );
    }
    // A bad duration is a shape error at its value.
    let text = format!("{MINIMAL}\n[retention]\nkeep_one_per = \"often\"\n");
    let msg = parse(Path::new("c.toml"), &text, &no_env())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad duration `often`"), "{msg}");
}
