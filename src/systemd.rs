//! Talking to systemd: readiness, reload and stop notifications, STATUS= lines and the
//! watchdog, over the documented `$NOTIFY_SOCKET` datagram protocol (the sd-notify crate; no
//! libsystemd). Outside systemd every call is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Proof of life from the main loop and the pass in progress; the watchdog pings systemd only
/// while it is fresh, so a hung daemon gets restarted.
#[derive(Clone)]
pub struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn beat(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// The notify protocol is one `KEY=value` per line: a newline in a STATUS= text (error
/// messages quote Entra's multi-line descriptions) would end it and start garbage keys.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// RELOADING=1 must carry the monotonic time for `Type=notify-reload`; plain `notify`
/// accepts it too.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Starts the watchdog pinger if the unit has `WatchdogSec=`: a ping every half period
/// while the heartbeat is younger than the period.
pub fn start_watchdog(heartbeat: Heartbeat) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec);
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period / 2);
                if heartbeat.age() < period {
                    send(&[NotifyState::Watchdog]);
                } else {
                    log::error!(
                        "daemon: no progress for {}s; letting the systemd watchdog restart us",
                        heartbeat.age().as_secs()
                    );
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("daemon: cannot start the watchdog thread: {e}");
    }
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("systemd: notify failed: {e}");
    }
}
