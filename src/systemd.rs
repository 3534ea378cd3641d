//! The systemd notify protocol (`Type=notify`): `READY=1`, `RELOADING=1` with `MONOTONIC_USEC`,
//! `STOPPING=1`, `STATUS=` lines and `WATCHDOG=1` keep-alives, sent as datagrams to
//! `$NOTIFY_SOCKET`. Without that variable (not under systemd) every call does nothing. It owns
//! no signals and no decisions: the daemon says when it is ready, reloading or stopping.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "Could not notify systemd.");
    }
}

/// The daemon is up: store open, rules loaded, listener bound.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts; systemd waits for the next [`ready`].
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The daemon is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping.")]);
}

/// A one-line status shown by `systemctl status`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// A watchdog keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send [`watchdog`]: half of `WatchdogSec`, when systemd set `WATCHDOG_USEC` for
/// this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
