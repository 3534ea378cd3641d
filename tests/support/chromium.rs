//! Headless Chromium for the page tests (included with `#[path]`): dump a page's DOM after it
//! loaded (with Chromium's console log, when asked), or take a screenshot. Each run gets its own profile directory and a bounded wait; a
//! run that overstays is killed and the test fails saying so. Without a `chromium` binary the
//! test fails with the command that installs it (`CHROMIUM` may name another binary).

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

pub struct Chromium {
    binary: PathBuf,
    scratch: PathBuf,
}

impl Chromium {
    /// Find Chromium (`$CHROMIUM`, else `chromium` or `chromium-browser` on the PATH).
    pub fn find(scratch: &Path) -> Chromium {
        let candidates: Vec<PathBuf> = match std::env::var_os("CHROMIUM") {
            Some(path) => vec![PathBuf::from(path)],
            None => std::env::var_os("PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
                        .collect()
                })
                .unwrap_or_default(),
        };
        let Some(binary) = candidates.into_iter().find(|p| p.is_file()) else {
            panic!(
                "headless Chromium is needed for the status page tests but was not found; \
                 install it with `apt-get install chromium` (or set CHROMIUM=/path/to/chromium)"
            );
        };
        std::fs::create_dir_all(scratch).unwrap();
        Chromium {
            binary,
            scratch: scratch.to_path_buf(),
        }
    }

    /// Run Chromium headless with `extra` arguments and `url`; its stdout.
    fn run(&self, tag: &str, extra: &[String], url: &str) -> String {
        let profile = self.scratch.join(format!("profile-{tag}"));
        let out_path = self.scratch.join(format!("{tag}.stdout"));
        let err_path = self.scratch.join(format!("{tag}.stderr"));
        let mut child = Command::new(&self.binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish with {url} within {RUN_LIMIT:?}; stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "chromium failed ({status}) on {url}; stderr:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        std::fs::read_to_string(&out_path).unwrap()
    }

    /// The page's DOM as Chromium serialises it once loaded.
    pub fn dump_dom(&self, tag: &str, url: &str) -> String {
        self.run(tag, &["--dump-dom".to_string()], url)
    }

    /// The page's DOM as [`Chromium::dump_dom`] gives it, and Chromium's log of loading it (its
    /// console: a Content-Security-Policy violation is logged there, naming the directive).
    pub fn dump_dom_logged(&self, tag: &str, url: &str) -> (String, String) {
        let extra = [
            "--dump-dom".to_string(),
            "--enable-logging=stderr".to_string(),
            "--v=0".to_string(),
        ];
        let dom = self.run(tag, &extra, url);
        let log = std::fs::read_to_string(self.scratch.join(format!("{tag}.stderr"))).unwrap();
        (dom, log)
    }

    /// A PNG screenshot of the page at `width` × `height`, written to `path`.
    pub fn screenshot(&self, tag: &str, url: &str, path: &Path, width: u32, height: u32) {
        let _ = std::fs::remove_file(path);
        self.run(
            tag,
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={width},{height}"),
            ],
            url,
        );
        assert!(
            path.is_file(),
            "chromium wrote no screenshot at {}",
            path.display()
        );
    }
}
