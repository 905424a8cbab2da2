//! Where each resource's round starts: full, a full round resumed, or incremental.

use crate::config::Config;
use crate::graph::Resource;
use crate::store::{Kind, Store, StoreError};

/// Where a resource's round starts, and whether it is full (and so reconciles at its end).
#[derive(Debug, Clone)]
pub(super) struct Round {
    pub resource: Resource,
    pub url: String,
    pub full: bool,
    /// A new full round whose generation is taken with its first page.
    pub fresh: bool,
    pub generation: i64,
    pub query: String,
    /// The deletion guard held some of this round's deletions: its link stays where it
    /// was, so they come again in the next pass.
    pub held: bool,
    /// The resource's first import: memberships are audited per group at its end.
    pub baseline: bool,
    /// The catch-up after a snapshot: the groups it reports are queued for a re-read.
    pub catchup: bool,
}

impl Round {
    pub fn plan(
        config: &Config,
        store: &Store,
        resource: Resource,
        full: bool,
        restart: bool,
    ) -> Result<Round, StoreError> {
        let state = store.sync_state(resource)?;
        let query = format!(
            "{}|{}|{}",
            config.entra.graph_endpoint,
            config.entra.tenant_id.to_ascii_lowercase(),
            resource.select()
        );
        let mut round = Round {
            resource,
            url: resource.initial_url(&config.entra.graph_endpoint),
            full: true,
            fresh: true,
            generation: state.generation,
            query: query.clone(),
            held: false,
            baseline: false,
            catchup: false,
        };
        if restart {
            // Stuck on a page that cannot be used: start over, whatever the links say.
            return Ok(round);
        }
        if state.query.as_deref() != Some(query.as_str()) {
            if state.query.is_some() {
                log::info!(
                    "sync: {resource}: the stored delta link was made for another endpoint, tenant \
                     or property list; starting a full pass"
                );
            }
            return Ok(round);
        }
        if let Some(resume) = state.resume_link.filter(|_| state.resume_full || !full) {
            // A full round that was interrupted (a stop, a reload, a crash) is continued even
            // when a full pass is asked for: it reconciles at its end all the same, and
            // starting over on every interruption could never finish.
            round.url = resume;
            round.full = state.resume_full;
            round.fresh = false;
            round.baseline = state.baseline;
            round.catchup = state.catchup && !state.resume_full;
        } else if full {
            return Ok(round);
        } else if let Some(delta) = state.delta_link {
            round.url = delta;
            round.full = false;
            round.fresh = false;
            round.catchup = state.catchup;
        }
        Ok(round)
    }

    pub fn describe(&self) -> String {
        let what = match (self.full, self.fresh) {
            (true, true) => "full",
            (true, false) => "full, resumed",
            (false, _) => "incremental",
        };
        format!("{}: {what}", self.resource)
    }

    pub fn kind(&self) -> Kind {
        Kind::of(self.resource)
    }
}
