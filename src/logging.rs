//! Logging: installs the process-wide `tracing` subscriber, readable text on a terminal or one
//! JSON object per line (`[log] format = "json"`), filtered by `[log] level` (or `RUST_LOG` when
//! set). It owns nothing else: the daemon's code logs through `tracing` macros with structured
//! fields first, then a sentence.

use std::io::IsTerminal;

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level {level:?}: {message}")]
    Level { level: String, message: String },
}

/// Installs the subscriber. A second call (tests embedding the daemon twice) keeps the first one.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(&config.level),
    }
    .map_err(|e| LoggingError::Level {
        level: config.level.clone(),
        message: e.to_string(),
    })?;
    // Colours only on a terminal: under systemd stderr is the journal, which would keep the
    // escape codes as text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed, which is fine.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
