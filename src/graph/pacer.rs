//! The pacer: how fast a `Graph` (all its clones, so every thread using it) may send.
//!
//! Every request waits for it first, and every response (and every `$batch` item) tells it
//! what Graph said of the quota (graph-protocol.md 5.1, 5.2): a 429 with `Retry-After` pauses
//! *all* requests until then, since the quota is the application's in the tenant, not one
//! thread's (so does a 503 with `Retry-After`); `x-ms-throttle-limit-percentage` (sent only above 80 % of the quota) spaces new
//! requests out, the more the closer to throttling, until a response comes without it (a
//! server error without it says nothing of the quota, and keeps the spacing); and
//! `x-ms-resource-unit` adds up to the resource units spent. It never refuses a request.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// Below this share of the quota Graph sends no percentage, and requests go at full speed.
const SLOW_FROM: f64 = 0.8;
/// Spacing at [`SLOW_FROM`]; it doubles every [`DOUBLING`] points above it.
const FIRST_SPACING: Duration = Duration::from_millis(25);
const DOUBLING: f64 = 0.05;
/// The widest spacing: beyond it 429s and their `Retry-After` do the slowing.
const MAX_SPACING: Duration = Duration::from_secs(2);

/// The pacing rule: the time between the starts of two requests when Graph last reported
/// `limit_percentage` of the quota used (`None`: no header, below 80 %). 25 ms at 0.8,
/// doubling every 0.05: 100 ms at 0.9, 400 ms at 1.0 (where throttling starts), at most 2 s.
pub(super) fn spacing(limit_percentage: Option<f64>) -> Duration {
    match limit_percentage {
        Some(p) if p.is_finite() && p >= SLOW_FROM => {
            let steps = ((p - SLOW_FROM) / DOUBLING).min(16.0);
            FIRST_SPACING.mul_f64(2f64.powf(steps)).min(MAX_SPACING)
        }
        _ => Duration::ZERO,
    }
}

/// What one response or `$batch` item says about the quota.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Signals {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub resource_units: Option<u64>,
    pub limit_percentage: Option<f64>,
}

impl Signals {
    /// Reads the signals of a response with `status` whose headers `header` looks up by
    /// lower-case name.
    pub fn read<'a>(status: u16, header: impl Fn(&str) -> Option<&'a str>) -> Signals {
        Signals {
            status,
            retry_after: header("retry-after").and_then(crate::http::retry_after_value),
            resource_units: header("x-ms-resource-unit").and_then(|v| v.trim().parse().ok()),
            limit_percentage: header("x-ms-throttle-limit-percentage")
                .and_then(|v| v.trim().parse().ok()),
        }
    }

    /// Whether these signals say anything of the quota: a server error (500-504) without the
    /// percentage header comes from a failing server, not from the quota's accounting, so
    /// it keeps the spacing as it was (a 503 during throttling must not lift it).
    fn reports_quota(&self) -> bool {
        self.limit_percentage.is_some() || !(500..600).contains(&self.status)
    }

    /// The quota share these signals report: a 429 means at least 1.0 (throttling started)
    /// even without the header.
    fn used(&self) -> Option<f64> {
        let throttled = (self.status == 429).then_some(1.0);
        match (self.limit_percentage, throttled) {
            (Some(p), Some(t)) => Some(p.max(t)),
            (p, t) => p.or(t),
        }
    }
}

pub(super) struct Pacer {
    state: Mutex<State>,
    resource_units: AtomicU64,
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer {
            state: Mutex::new(State::default()),
            resource_units: AtomicU64::new(0),
        }
    }

    /// Waits until a request may start. True when `shutdown` was requested meanwhile.
    pub fn wait(&self, shutdown: &Shutdown) -> bool {
        let mut reserved = false;
        loop {
            let delay = self.lock().delay(Instant::now(), &mut reserved);
            if delay.is_zero() {
                return false;
            }
            if shutdown.sleep(delay) {
                return true;
            }
        }
    }

    /// Learns from the signals of one response, or of one batch (its items' together).
    pub fn observe(&self, signals: &[Signals]) {
        let units: u64 = signals.iter().filter_map(|s| s.resource_units).sum();
        self.resource_units.fetch_add(units, Ordering::Relaxed);
        self.lock().observe(signals, Instant::now());
    }

    pub fn resource_units(&self) -> u64 {
        self.resource_units.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few instants, consistent after every statement: a panic elsewhere
        // while it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shared timing: no request before `paused_until`, and starts `spacing` apart.
#[derive(Debug, Default)]
struct State {
    paused_until: Option<Instant>,
    spacing: Duration,
    next_slot: Option<Instant>,
}

impl State {
    /// How long a request waiting since `reserved` (its slot taken, or not yet) must still
    /// wait at `now`. The pause comes first; the slot is taken once, after it.
    fn delay(&mut self, now: Instant, reserved: &mut bool) -> Duration {
        if let Some(until) = self.paused_until.filter(|until| *until > now) {
            return until - now;
        }
        if *reserved {
            return Duration::ZERO;
        }
        *reserved = true;
        let start = self.next_slot.filter(|slot| *slot > now).unwrap_or(now);
        self.next_slot = Some(start + self.spacing);
        start - now
    }

    fn observe(&mut self, signals: &[Signals], now: Instant) {
        for s in signals {
            // A 503 with Retry-After is the service asking every caller to hold (5.1).
            if let (429 | 503, Some(after)) = (s.status, s.retry_after) {
                let until = now + after;
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            }
        }
        if !signals.iter().any(Signals::reports_quota) {
            return;
        }
        let used = signals
            .iter()
            .filter(|s| s.reports_quota())
            .filter_map(Signals::used)
            .reduce(f64::max);
        self.spacing = spacing(used);
        // A slot reserved under a wider spacing is kept; a narrower one applies from it on.
        if self.spacing.is_zero() {
            self.next_slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spacing_grows_with_the_quota_used() {
        let ms = Duration::from_millis;
        for (percentage, expected) in [
            (None, Duration::ZERO),
            (Some(0.5), Duration::ZERO),
            (Some(0.79), Duration::ZERO),
            (Some(0.8), ms(25)),
            (Some(0.85), ms(50)),
            (Some(0.9), ms(100)),
            (Some(1.0), ms(400)),
            (Some(1.1), ms(1600)),
            (Some(1.2), MAX_SPACING),
            (Some(1.8), MAX_SPACING),
            (Some(1e300), MAX_SPACING),
            (Some(f64::NAN), Duration::ZERO),
        ] {
            let got = spacing(percentage);
            let close = got.abs_diff(expected) < Duration::from_micros(10);
            assert!(close, "{percentage:?}: {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn signals_are_read_from_headers() {
        let headers = [
            ("retry-after", "0.2"),
            ("x-ms-resource-unit", "2"),
            ("x-ms-throttle-limit-percentage", "1.2"),
        ];
        let signals = Signals::read(429, |name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        assert_eq!(signals.retry_after, Some(Duration::from_millis(200)));
        assert_eq!(signals.resource_units, Some(2));
        assert_eq!(signals.limit_percentage, Some(1.2));
        assert_eq!(Signals::read(200, |_| Some("junk")).resource_units, None);
        // A 429 counts as throttling started, with or without the header.
        assert_eq!(Signals::read(429, |_| None).used(), Some(1.0));
        assert_eq!(Signals::read(200, |_| None).used(), None);
    }

    #[test]
    fn a_429_pauses_every_request_until_its_retry_after() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut state = State::default();
        let throttled = Signals {
            status: 429,
            retry_after: Some(ms(500)),
            ..Signals::default()
        };
        state.observe(&[Signals::default(), throttled], t0);
        // Any request, whoever was throttled, waits out the pause.
        assert_eq!(state.delay(t0 + ms(100), &mut false), ms(400));
        // A shorter Retry-After later does not cut the pause short.
        let shorter = Signals {
            retry_after: Some(ms(50)),
            ..throttled
        };
        state.observe(&[shorter], t0 + ms(100));
        assert_eq!(state.delay(t0 + ms(200), &mut false), ms(300));
        // After it, requests are spaced at the 429's share (1.0 -> 400 ms).
        let mut first = false;
        assert_eq!(state.delay(t0 + ms(500), &mut first), Duration::ZERO);
        assert!(first);
        assert_eq!(state.delay(t0 + ms(500), &mut false), ms(400));
        // A response without the header: full speed again.
        state.observe(&[Signals::default()], t0 + ms(600));
        assert_eq!(state.delay(t0 + ms(600), &mut false), Duration::ZERO);
        assert_eq!(state.delay(t0 + ms(600), &mut false), Duration::ZERO);
    }

    #[test]
    fn the_percentage_spaces_requests_out() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut state = State::default();
        let busy = Signals {
            status: 200,
            limit_percentage: Some(0.9),
            ..Signals::default()
        };
        // A batch reports its items together: the highest share counts.
        state.observe(&[Signals::default(), busy], t0);
        let delays: Vec<Duration> = (0..3).map(|_| state.delay(t0, &mut false)).collect();
        assert_eq!(delays, [Duration::ZERO, ms(100), ms(200)]);
        // A request whose slot is taken does not take another one.
        let mut reserved = true;
        assert_eq!(state.delay(t0, &mut reserved), Duration::ZERO);
    }

    #[test]
    fn a_server_error_without_the_header_keeps_the_spacing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut state = State::default();
        let busy = Signals {
            status: 200,
            limit_percentage: Some(1.0),
            ..Signals::default()
        };
        state.observe(&[busy], t0);
        for status in [500, 502, 503, 504] {
            let failed = Signals {
                status,
                ..Signals::default()
            };
            state.observe(&[failed], t0);
            assert_eq!(state.spacing, ms(400), "HTTP {status}");
        }
        // One with the header still counts, and so does a success without it.
        let reported = Signals {
            status: 503,
            limit_percentage: Some(0.9),
            ..Signals::default()
        };
        state.observe(&[reported], t0);
        assert_eq!(state.spacing, ms(100));
        let ok = Signals {
            status: 200,
            ..Signals::default()
        };
        state.observe(&[ok], t0);
        assert_eq!(state.spacing, Duration::ZERO);
    }

    #[test]
    fn a_503_with_retry_after_pauses_every_request() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut state = State::default();
        let unavailable = Signals {
            status: 503,
            retry_after: Some(ms(300)),
            ..Signals::default()
        };
        state.observe(&[unavailable], t0);
        assert_eq!(state.delay(t0 + ms(100), &mut false), ms(200));
        // Without Retry-After the request's own backoff waits, not everyone's.
        let mut state = State::default();
        state.observe(
            &[Signals {
                retry_after: None,
                ..unavailable
            }],
            t0,
        );
        assert_eq!(state.delay(t0, &mut false), Duration::ZERO);
    }
}
