//! Process-wide counters of Graph responses by resource, for the metrics file. A leaf
//! module (it imports nothing of ours), so `graph` can count without depending on `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The resources counted, in the order of the arrays below.
pub const RESOURCES: [&str; 2] = ["users", "groups"];

static RESPONSES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static THROTTLED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one Graph response for `resource` (`users` or `groups`); 429 also counts as
/// throttled. Other names are ignored.
pub fn graph_response(resource: &str, status: u16) {
    let Some(i) = RESOURCES.iter().position(|r| *r == resource) else {
        return;
    };
    RESPONSES[i].fetch_add(1, Ordering::Relaxed);
    if status == 429 {
        THROTTLED[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// (resource, responses, throttled responses) since the process started.
pub fn graph_totals() -> Vec<(&'static str, u64, u64)> {
    RESOURCES
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                *r,
                RESPONSES[i].load(Ordering::Relaxed),
                THROTTLED[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}
