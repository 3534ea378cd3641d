//! `canaryd check` accepts exactly what `canaryd serve` accepts (issue 16, point 8): hundreds
//! of mutated daemon configs and rule files (values swapped for hostile ones, keys deleted,
//! misspelt or repeated), each judged by `check` and by `serve`'s own loading: in-process for
//! all of them, and with the real binaries for a sample (`serve` counts as accepting when it
//! tells systemd READY=1, as refusing when it exits first; it must never crash).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// SplitMix64: a fixed seed gives the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values an operator (or a fuzzer) might write anywhere.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "3",
    "11001",
    "4294967296",
    "9223372036854775807",
    "1.5",
    "-0.5",
    "1e308",
    "nan",
    "inf",
    "true",
    "\"\"",
    "\"info\"",
    "\"eror\"",
    "\"canaryd=debug,info\"",
    "\"json\"",
    "\"yaml\"",
    "\"0s\"",
    "\"1ms\"",
    "\"10s\"",
    "\"5m\"",
    "\"400d\"",
    "\"99999999d\"",
    "\"5 minutes\"",
    "\"http://127.0.0.1:9\"",
    "\"ftp://x\"",
    "\"not a url\"",
    "\"/nonexistent/canaryd-token\"",
    "\"relative\"",
    "\"trend\"",
    "\"absolute\"",
    "\"*/5 * * * *\"",
    "\"61 * * * *\"",
    "\"rollback\"",
    "\"p99\"",
    "[]",
    "[\"team-email\"]",
    "{ a = 1 }",
];

/// Keys to add next to existing ones (unknown where they land, or repeated).
const KEYS: &[&str] = &[
    "timeout",
    "retries",
    "level",
    "max_concurrent_queries",
    "url",
    "weight",
    "window",
    "step",
    "min_samples",
    "tolerance",
    "required_passes",
    "max_duration",
];

/// Keys left alone in configs: a changed `listen` could take a port another process uses and a
/// changed `state_dir` a directory the test cannot write, which are not validation questions.
const PROTECTED: &[&str] = &["listen", "state_dir"];

/// Apply 1 (mostly) to 3 random edits to the `key = value` lines of `text`.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let edits = [1, 1, 1, 2, 3][rng.below(5)];
    for _ in 0..edits {
        let keyed: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                let l = lines[i].trim_start();
                let key = l.split('=').next().unwrap_or("").trim();
                !l.starts_with('#')
                    && !l.starts_with('[')
                    && l.contains('=')
                    && !key.is_empty()
                    && !PROTECTED.contains(&key)
            })
            .collect();
        if keyed.is_empty() {
            break;
        }
        let i = *rng.pick(&keyed);
        let key = lines[i].split('=').next().unwrap().trim().to_string();
        match rng.below(10) {
            0..=4 => lines[i] = format!("{key} = {}", rng.pick(VALUES)),
            5 | 6 => {
                lines.remove(i);
            }
            7 => {
                let mut chars: Vec<char> = key.chars().collect();
                let at = rng.below(chars.len());
                chars.remove(at);
                let typo: String = chars.into_iter().collect();
                lines[i] = lines[i].replacen(&key, &typo, 1);
            }
            _ => lines.insert(i + 1, format!("{} = {}", rng.pick(KEYS), rng.pick(VALUES))),
        }
    }
    lines.join("\n") + "\n"
}

/// A daemon config and its rules directory in `dir`, from the shipped ones.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    rules: BTreeMap<String, String>,
}

fn base_config(dir: &Path) -> String {
    let shipped = std::fs::read_to_string(root().join("config/canaryd.toml")).unwrap();
    shipped
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "state_dir" => format!("state_dir = {:?}", dir.join("state")),
                "rules_dir" => format!("rules_dir = {:?}", dir.join("rules")),
                "emergency_stop_file" => {
                    format!("emergency_stop_file = {:?}", dir.join("emergency-stop"))
                }
                "listen" => "listen = \"127.0.0.1:0\"".to_string(),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

impl Setup {
    fn new(dir: &Path) -> Setup {
        let mut rules = BTreeMap::new();
        for entry in std::fs::read_dir(root().join("rules")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                rules.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
        Setup {
            dir: dir.to_path_buf(),
            config: dir.join("canaryd.toml"),
            rules,
        }
    }

    /// Write the config text and the rules, one of them replaced by `rule` if given.
    fn write(&self, config: &str, rule: Option<(&str, &str)>) {
        let rules_dir = self.dir.join("rules");
        let _ = std::fs::remove_dir_all(&rules_dir);
        std::fs::create_dir_all(&rules_dir).unwrap();
        for (name, text) in &self.rules {
            let text = match rule {
                Some((n, t)) if n == name => t,
                _ => text,
            };
            std::fs::write(rules_dir.join(name), text).unwrap();
        }
        std::fs::write(&self.config, config).unwrap();
    }
}

/// What `serve` does before it runs: load the config, then the rules against it.
fn serve_accepts(config: &Path) -> Result<(), String> {
    let config = canaryd::config::load(config).map_err(|e| e.to_string())?;
    canaryd::daemon::load_rules(&config)
        .map(|_| ())
        .map_err(|problems| format!("{} rule problems", problems.len()))
}

/// What `check --config` says, in-process.
fn check_accepts(config: &Path) -> Result<(), String> {
    let report = canaryd::cli::check::check(Some(config), Vec::new())?;
    match report.problems.first() {
        None => Ok(()),
        Some(p) => Err(p.to_string()),
    }
}

/// One case: what was mutated, the config text, and a rule file replaced (name, text).
type Case = (String, String, Option<(String, String)>);

/// Mutated configs and rule files, each with a note of what was mutated.
fn cases(setup: &Setup, rng: &mut Rng, configs: usize, rule_files: usize) -> Vec<Case> {
    let base = base_config(&setup.dir);
    let mut out = Vec::new();
    for i in 0..configs {
        out.push((format!("config mutation {i}"), mutate(&base, rng), None));
    }
    let names: Vec<&String> = setup.rules.keys().collect();
    for i in 0..rule_files {
        let name = (*rng.pick(&names)).clone();
        let text = mutate(&setup.rules[&name], rng);
        out.push((
            format!("{name} mutation {i}"),
            base.clone(),
            Some((name, text)),
        ));
    }
    out
}

#[test]
fn check_accepts_exactly_what_serve_loads_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(tmp.path());
    let mut rng = Rng(1608);
    let mut disagreements = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (what, config, rule) in cases(&setup, &mut rng, 600, 600) {
        setup.write(
            &config,
            rule.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        );
        let serve = serve_accepts(&setup.config);
        let check = check_accepts(&setup.config);
        if serve.is_ok() != check.is_ok() {
            disagreements.push(format!(
                "{what}: serve {serve:?}, check {check:?}\n--- config:\n{config}"
            ));
        }
        if serve.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of 1200 disagree; first:\n{}",
        disagreements.len(),
        disagreements[0]
    );
    // The mutations must exercise both answers, or the test proves nothing.
    assert!(
        accepted >= 100 && refused >= 500,
        "{accepted} accepted, {refused} refused"
    );
}

/// How the real `serve` ended: ready (then stopped by the test), or its exit code.
#[derive(Debug, PartialEq)]
enum Served {
    Ready,
    Exited(Option<i32>),
}

fn run_serve(config: &Path, state: &Path) -> (Served, String) {
    let socket_path = state.with_extension("notify");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, not a measurement: starting takes well under a second.
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 4096];
    let served = loop {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            child.kill().unwrap();
            break Served::Ready;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break Served::Exited(status.code());
        }
        assert!(
            Instant::now() < give_up,
            "serve neither became ready nor exited"
        );
    };
    let out = child.wait_with_output().unwrap();
    (served, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_real_check_and_serve_agree_on_a_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(tmp.path());
    let mut rng = Rng(816);
    let all = cases(&setup, &mut rng, 60, 60);
    // Every 5th case: 24 runs of each binary.
    for (n, (what, config, rule)) in all.into_iter().enumerate().filter(|(n, _)| n % 5 == 0) {
        setup.write(
            &config,
            rule.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        );
        let check = Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(["check", "--config"])
            .arg(&setup.config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let state = tmp.path().join(format!("state-{n}"));
        let state_line = format!("state_dir = {:?}", state);
        let config = config
            .lines()
            .map(|l| {
                if l.starts_with("state_dir") {
                    state_line.as_str()
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&setup.config, &config).unwrap();
        let (served, stderr) = run_serve(&setup.config, &state);
        let check_ok = check.status.code() == Some(0);
        assert!(
            matches!(check.status.code(), Some(0 | 1)),
            "{what}: check exited {:?}: {}",
            check.status.code(),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            matches!(served, Served::Ready | Served::Exited(Some(1))),
            "{what}: serve ended {served:?} (a crash, not a refusal):\n{stderr}\n--- config:\n{config}"
        );
        assert_eq!(
            check_ok,
            served == Served::Ready,
            "{what}: check said\n{}\nserve ended {served:?}:\n{stderr}\n--- config:\n{config}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}
