//! What is left of a snapshot's listing to fetch, in memory: the chains not yet at their end,
//! the groups whose members wait to be read, and what was refused or failed.

use std::collections::{HashMap, HashSet, VecDeque};

use super::BATCH_ITEMS;
use crate::graph::{GraphError, Resource, members_url};

/// What is left to fetch, in memory; the database holds the same (once committed).
#[derive(Default)]
pub(super) struct Work {
    /// Chains not yet at their end: where each continues (`None`: its start), and whether a
    /// request for it is in flight.
    pub(super) chains: HashMap<(Resource, String), (Option<String>, bool)>,
    /// Groups whose members wait to be read, with the link their list continues at.
    pub(super) groups: VecDeque<(String, Option<String>)>,
    /// Groups ever queued in this snapshot: a group listed twice is read once.
    pub(super) queued: HashSet<String>,
    /// Groups whose request in flight continues their member list at a stored nextLink.
    pub(super) continuing: HashSet<String>,
    /// Chains and groups whose nextLink Graph no longer accepted, listed again from their
    /// start: once each, so a link that keeps failing fails the pass instead of looping.
    pub(super) restarted: HashSet<String>,
    /// A request failed: nothing more is sent, and nothing is reconciled.
    pub(super) failed: bool,
    /// Groups whose member list Graph refused (403), with the first refusal: settled once
    /// the listing is complete (`Pass::settle_refused`).
    pub(super) refused: Vec<String>,
    pub(super) refusal: Option<GraphError>,
    /// Member pages read.
    pub(super) members_read: usize,
}

impl Work {
    pub(super) fn is_done(&self) -> bool {
        self.chains.is_empty() && self.groups.is_empty()
    }

    pub(super) fn queue(&mut self, group: &str, next: Option<String>) {
        if self.queued.insert(group.to_owned()) {
            self.groups.push_back((group.to_owned(), next));
        }
    }

    /// Up to [`BATCH_ITEMS`] queued groups with the links to read, when a batch is worth
    /// sending: full, or nothing else will fill it soon.
    pub(super) fn batch(&mut self, endpoint: &str, idle: bool) -> Option<Vec<(String, String)>> {
        let listing_groups = self.chains.keys().any(|(r, _)| *r == Resource::Groups);
        let worth = self.groups.len() >= BATCH_ITEMS
            || (!self.groups.is_empty() && (!listing_groups || idle));
        if !worth {
            return None;
        }
        let take = self.groups.len().min(BATCH_ITEMS);
        let batch = self
            .groups
            .drain(..take)
            .map(|(id, next)| {
                let url = match next {
                    Some(next) => {
                        self.continuing.insert(id.clone());
                        next
                    }
                    None => members_url(endpoint, &id),
                };
                (id, url)
            })
            .collect();
        Some(batch)
    }

    /// Whether a failed request that continued at a nextLink (`from_link`) is listed again
    /// from its start: Graph answers a skiptoken it no longer honours (one kept across a
    /// restart, or older than the listing's lifetime) with 400, 404 or 410 (graph-protocol.md
    /// 3.4: "must restart the round if that fails"). Listing again is idempotent: what the
    /// earlier pages applied is stamped as seen.
    pub(super) fn restarts(&mut self, what: String, from_link: bool, error: &GraphError) -> bool {
        from_link && error.is_stale_link() && self.restarted.insert(what)
    }

    /// Whether a group whose member list answered 404 at a nextLink (`from_link`) is read
    /// again from its first page rather than taken as deleted: once, as [`Work::restarts`].
    pub(super) fn restarts_gone(&mut self, group: &str, from_link: bool) -> bool {
        from_link && self.restarted.insert(group.to_owned())
    }
}
