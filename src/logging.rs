//! Logging: installs the process-wide `tracing` subscriber, readable text on a terminal or one
//! JSON object per line (`[log] format = "json"`), filtered by `[log] level` (or `RUST_LOG` when
//! set). Field values in text logs have their control characters escaped ([`EscapedFields`]):
//! reasons, names and error texts come from people and remote servers, and a newline in one
//! must not start a line that reads as the daemon's own (JSON already escapes them). It owns
//! nothing else: the daemon's code logs through `tracing` macros with structured fields first,
//! then a sentence.

use std::fmt::Write as _;
use std::io::IsTerminal;

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The text format's fields (the message and every `key=value`, of events and spans) as
/// `tracing-subscriber` writes them, with each control character (newline, carriage return,
/// escape, ...) and line or paragraph separator written as its Rust escape (`\n`, `\r`,
/// `\u{1b}`), so one event is always one line.
#[derive(Debug, Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut rendered = String::new();
        self.inner
            .format_fields(Writer::new(&mut rendered), fields)?;
        writer.write_str(&escape_controls(&rendered))
    }
}

/// `text` with its control characters and line or paragraph separators escaped. Pure.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

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
        LogFormat::Text => builder.fmt_fields(EscapedFields::default()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        let cases = [
            ("deploy 42: naïve café ✓", "deploy 42: naïve café ✓"),
            ("a\nb", "a\\nb"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\u{1b}[2Kred", "\\u{1b}[2Kred"),
            ("x\u{85}y\u{2028}z", "x\\u{85}y\\u{2028}z"),
            ("back\\slash and \"quotes\"", "back\\slash and \"quotes\""),
        ];
        for (text, want) in cases {
            assert_eq!(escape_controls(text), want, "{text:?}");
        }
    }

    #[test]
    fn an_event_with_a_newline_in_a_field_or_the_message_is_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .with_writer(move || writer.clone())
            .finish();
        let forged = "x\n2026-01-01T00:00:00Z INFO fake line";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rollout", name = %forged);
            let _in = span.enter();
            tracing::warn!(reason = %forged, by = ?forged, "Asked: {forged}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(
            text.matches("x\\n2026-01-01T00:00:00Z INFO fake line")
                .count(),
            4,
            "{text}"
        );
    }
}
