//! `canaryd demo`, the README's first command, run as a user runs it: the real binary, no config,
//! no Prometheus. It must exit 0 within a minute with the healthy rollout succeeded, the
//! regressing one rolled back, and say where the audit trail is (and the file must be there).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_succeeds_one_rollout_and_rolls_back_the_other() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run canaryd");
    // Bounded: the demo gives up by itself after 90 s; kill it if it hangs beyond that.
    let deadline = started + Duration::from_secs(110);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("canaryd demo did not finish within 75 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("canaryd demo took {:.1} s", started.elapsed().as_secs_f64());
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Status page: http://127.0.0.1:"),
        "{stdout}"
    );
    let summary = stdout
        .split("Summary (")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in\n{stdout}"));
    assert!(summary.contains("checkout-api  Succeeded"), "{summary}");
    assert!(summary.contains("search-api    RolledBack"), "{summary}");
    // Not a terminal: plain lines, no cursor movement.
    assert!(!stdout.contains("\x1b["), "{stdout}");
    assert!(
        stdout.contains("search-api: rolled-back 25% → 0%"),
        "{stdout}"
    );
    let db = summary
        .lines()
        .find_map(|l| l.strip_prefix("Audit trail (SQLite): "))
        .unwrap_or_else(|| panic!("no audit trail path in\n{summary}"));
    let db = std::path::Path::new(db.trim());
    assert!(db.is_file(), "{} does not exist", db.display());
    if let Some(dir) = db.parent().and_then(|state| state.parent()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
