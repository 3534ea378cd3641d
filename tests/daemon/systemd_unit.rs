//! The systemd side of `canaryd serve`: the shipped unit file passes `systemd-analyze verify` and
//! scores a low exposure in `systemd-analyze security`, and the real binary speaks the notify
//! protocol (READY, WATCHDOG, RELOADING + READY after SIGHUP, STOPPING after SIGTERM) on a
//! NOTIFY_SOCKET this test listens on, with the shipped config and rules and no Prometheus up.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canaryd-systemd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shipped unit with ExecStart pointing at the built binary (verify needs it to exist).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("systemd/canaryd.service")).unwrap();
    assert!(
        text.contains("ExecStart=/usr/bin/canaryd serve"),
        "unexpected ExecStart"
    );
    let path = dir.join("canaryd.service");
    std::fs::write(&path, text.replace("/usr/bin/canaryd", BIN)).unwrap();
    path
}

#[test]
fn the_unit_file_verifies_cleanly() {
    let dir = temp_dir("verify");
    let unit = unit_copy(&dir);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "verify printed warnings:\n{stderr}"
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=canaryd",
        "ConfigurationDirectory=canaryd",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed}");
    }
}

#[test]
fn the_unit_is_hardened() {
    let dir = temp_dir("security");
    let unit = unit_copy(&dir);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure from {line:?}"));
    assert!(score <= 2.5, "exposure {score} is above 2.5:\n{text}");
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) for a datagram containing `want`; returns everything received meanwhile.
fn expect(sock: &UnixDatagram, want: &str, within: Duration, seen: &mut Vec<String>) {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return;
            }
        }
    }
    panic!("no {want} within {within:?}; got {seen:?}");
}

#[test]
fn the_daemon_speaks_the_notify_protocol_and_stops_on_sigterm() {
    let dir = temp_dir("notify");
    let socket_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(repo("config/canaryd.toml"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("CANARYD__STATE_DIR", dir.join("state"))
        .env("CANARYD__RULES_DIR", repo("rules"))
        .env("CANARYD__EMERGENCY_STOP_FILE", dir.join("stop"))
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        // Nothing listens there: the daemon must still become ready.
        .env(
            "CANARYD__SOURCES__PROMETHEUS__URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child };
    let pid = daemon.child.id().to_string();
    let mut seen = Vec::new();
    expect(&sock, "READY=1", Duration::from_secs(10), &mut seen);
    expect(&sock, "WATCHDOG=1", Duration::from_secs(2), &mut seen);

    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    expect(&sock, "RELOADING=1", Duration::from_secs(5), &mut seen);
    let reloading = seen.last().unwrap().clone();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    expect(&sock, "READY=1", Duration::from_secs(5), &mut seen);

    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    expect(&sock, "STOPPING=1", Duration::from_secs(5), &mut seen);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // State was flushed: the shipped rules' rollouts are in the database.
    let store = canaryd::store::Store::open(&dir.join("state")).unwrap();
    let rollouts = store.rollouts::<canaryd::rollout::RolloutState>().unwrap();
    let names: Vec<_> = rollouts.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["checkout-api", "search-api"]);
}
