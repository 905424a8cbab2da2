//! The resource-unit (RU) budget of notes 5.2: what each request costs, a token bucket per
//! simulator (one application + tenant pair), and the headers that report both.
//!
//! Choices where the notes leave room:
//! - Delta requests cost like `GET users`: 2, or 1 with `$select` (notes 9 #15 leave it
//!   open). A nextLink or deltaLink counts as "with `$select`" when its round was started
//!   with one, since the link encodes the query.
//! - `$top` below 20 takes 1 off on the plain lists only (delta ignores `$top`).
//! - A throttled request costs 1 RU ("throttled requests still count", notes 5.1) and is
//!   charged even though the bucket is short, so the bucket may go below empty: a client
//!   that retries at once pushes its own `Retry-After` further out.
//! - `Retry-After` is the time until the bucket holds this request's cost again, rounded up
//!   to the millisecond, so a retry after exactly that long succeeds unless other requests
//!   spent the refill meanwhile.
//! - A cost above the whole quota is capped at the quota (it could never be paid otherwise).
//! - A `$batch` envelope costs 0; its items are charged one by one, in request order.

use std::time::{Duration, Instant};

use super::http::{Incoming, Reply, parse_pairs};
use super::{Endpoint, Shared};

/// What a throttled request costs.
const THROTTLED_COST: u32 = 1;
/// `x-ms-throttle-limit-percentage` appears once more than this share of the quota is used.
const REPORT_ABOVE: f64 = 0.8;
/// The highest value that header takes (notes 5.2).
const MAX_PERCENTAGE: f64 = 1.8;

/// The outcome of charging one request.
#[derive(Clone, Debug)]
pub(super) enum Charge {
    /// Paid `cost`; `used` is the share of the quota in use afterwards (`None`: no quota).
    Paid { cost: u32, used: Option<f64> },
    /// Not enough RU: answered 429, charged `THROTTLED_COST`.
    Throttled { retry_after: f64, used: f64 },
}

impl Charge {
    /// RU actually charged.
    pub fn charged(&self) -> u32 {
        match self {
            Charge::Paid { cost, .. } => *cost,
            Charge::Throttled { .. } => THROTTLED_COST,
        }
    }
}

/// The token bucket. It starts full, and again whenever `Settings::ru_quota` changes.
pub(super) struct Bucket {
    quota: Option<(u32, Duration)>,
    tokens: f64,
    last: Instant,
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket {
            quota: None,
            tokens: 0.0,
            last: Instant::now(),
        }
    }
}

impl Bucket {
    /// Charges `cost` RU against `quota` (`None`: unlimited, always paid).
    pub fn charge(&mut self, quota: Option<(u32, Duration)>, cost: u32) -> Charge {
        let Some((capacity, window)) = quota else {
            self.quota = None;
            return Charge::Paid { cost, used: None };
        };
        // Free requests (the $batch envelope) are never throttled, even with the bucket
        // below empty: only their items are.
        if cost == 0 {
            return Charge::Paid { cost, used: None };
        }
        let now = Instant::now();
        let capacity = capacity.max(1);
        if self.quota != Some((capacity, window)) {
            self.quota = Some((capacity, window));
            self.tokens = f64::from(capacity);
            self.last = now;
        }
        let full = f64::from(capacity);
        let rate = full / window.as_secs_f64().max(0.001);
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(full);
        self.last = now;
        let cost = cost.min(capacity);
        let needed = f64::from(cost);
        if self.tokens >= needed {
            self.tokens -= needed;
            let used = (full - self.tokens) / full;
            return Charge::Paid {
                cost,
                used: Some(used),
            };
        }
        self.tokens -= f64::from(THROTTLED_COST);
        let wait = (needed - self.tokens) / rate;
        // Rounded up to the millisecond plus one, so the retry finds the RU really refilled.
        let retry_after = (wait * 1000.0).ceil() / 1000.0 + 0.001;
        Charge::Throttled {
            retry_after,
            used: (full - self.tokens) / full,
        }
    }
}

/// Seconds as `Retry-After` sends them: fractional, three decimals (`2.128`).
pub(super) fn seconds(value: f64) -> String {
    format!("{value:.3}")
}

/// The cost table of notes 5.2 applied to one request (see the module doc for the choices).
pub(super) fn cost(shared: &Shared, endpoint: Endpoint, incoming: &Incoming) -> u32 {
    let pairs = parse_pairs(&incoming.query);
    let option = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let select = option("$select").is_some();
    let small_top = option("$top")
        .and_then(|top| top.trim().parse::<u32>().ok())
        .is_some_and(|top| top < 20);
    let base: i64 = match endpoint {
        Endpoint::Batch => return 0,
        Endpoint::UserList | Endpoint::GroupList => 2 - i64::from(select) - i64::from(small_top),
        Endpoint::Members => 3 - i64::from(select) - i64::from(small_top),
        Endpoint::UsersDelta | Endpoint::GroupsDelta => {
            let token = option("$skiptoken").or(option("$deltatoken"));
            let linked = token
                .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("latest"))
                .and_then(|t| shared.links().query_of(t))
                .is_some_and(|query| query.select.text.is_some());
            2 - i64::from(select || linked)
        }
        _ => 1,
    };
    u32::try_from(base.max(1)).unwrap_or(1)
}

/// Adds `x-ms-resource-unit` (what was charged) and, above 80 % of the quota,
/// `x-ms-throttle-limit-percentage` (unless the reply already has one).
pub(super) fn decorate(reply: &mut Reply, charge: &Charge) {
    reply.set("x-ms-resource-unit", charge.charged().to_string());
    let used = match charge {
        Charge::Paid { used, .. } => used.filter(|u| *u > REPORT_ABOVE),
        // Throttling starts at 1.0, whatever the bucket's exact fill.
        Charge::Throttled { used, .. } => Some(used.max(1.0)),
    };
    let has_percentage = reply
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("x-ms-throttle-limit-percentage"));
    if let Some(used) = used.filter(|_| !has_percentage) {
        let value = format!("{:.1}", used.min(MAX_PERCENTAGE));
        reply.set("x-ms-throttle-limit-percentage", value);
    }
}
