//! `canaryd serve`: load the config, set up logging, and run the daemon until SIGTERM or SIGINT;
//! SIGHUP reloads the rules. The only place that knows about signals: it turns them into the
//! daemon's `CancellationToken` and reload channel. It is also where the faces meet the daemon:
//! [`routes`] builds the API's and the status pages' router on the daemon's `Control`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::daemon::{self, Control, Options};

/// Exit code when the daemon stops on an error (bad config, bad rules, store trouble).
pub const FAILURE: u8 = 1;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The daemon config file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

/// The faces' routes on the daemon's handle: the operator API under `/v1` and the status pages
/// (`daemon::Faces`; `canaryd demo` and the tests embed the daemon with it too).
pub fn routes(control: Control) -> axum::Router {
    crate::api::router(control.clone()).merge(crate::web::routes(control))
}

/// Whether `CANARYD_EMERGENCY_STOP` asks for an emergency stop at start.
fn emergency_from_env() -> bool {
    std::env::var("CANARYD_EMERGENCY_STOP").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

pub fn run(args: ServeArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("canaryd: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    if let Err(e) = crate::logging::init(&config.log) {
        eprintln!("canaryd: {e}");
        return ExitCode::from(FAILURE);
    }
    limit_malloc_arenas();
    // Store calls run on blocking threads but go through one SQLite writer, so a few threads
    // are enough; tokio's default of 512 lets a burst of commits grow hundreds of idle threads,
    // each with its stack and malloc arena.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("canaryd: cannot start the async runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let signals = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => (term, int, hup),
            _ => {
                eprintln!("canaryd: cannot install signal handlers");
                return ExitCode::from(FAILURE);
            }
        };
        let token = shutdown.clone();
        tokio::spawn(async move {
            let (mut term, mut int, mut hup) = signals;
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM received."); token.cancel(); return; }
                    _ = int.recv() => { tracing::info!("SIGINT received."); token.cancel(); return; }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP received: reloading rules.");
                        let _ = reload_tx.try_send(());
                    }
                }
            }
        });
        let options = Options {
            emergency_stop_at_start: emergency_from_env(),
            on_listen: None,
            ..Options::default()
        };
        match daemon::run(config, options, routes, shutdown, reload_rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "canaryd stopped on an error.");
                eprintln!("canaryd: {e}");
                ExitCode::from(FAILURE)
            }
        }
    })
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core), which
/// roughly doubles the resident memory of a small multi-threaded daemon for no gain here: the
/// hot paths are I/O bound. Two arenas, set before any thread starts (as `MALLOC_ARENA_MAX=2`
/// would), measured 16.5 → 14.6 MB peak RSS with 10 rollouts (`bench/load.sh 10 30`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: `mallopt` only adjusts allocator parameters; it is called once, before the runtime
    // or any other thread exists. Its return value (0 on failure) only means the default stays.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
