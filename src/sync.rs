//! One sync pass: a delta round for users and one for groups, fetched on two threads and
//! applied by this thread, page by page, each page in a transaction with its resume link
//! (pages share one only while more are already waiting).
//!
//! The rules of applying a page live here (merge, deletes, memberships, reconciliation); the
//! SQL lives in `store` and the HTTP in `graph`. Memory stays bounded by the channel: a few
//! pages, whatever the tenant size.

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::graph::{
    DirectoryObject, Graph, GraphError, MemberChange, Next, Page, Removal, Resource,
};
use crate::shutdown::Shutdown;
use crate::store::{self, Counts, Kind, RunEnd, Store, StoreError, Tx};
use crate::systemd::Heartbeat;
use crate::team;

/// Pages fetched ahead of the writer. Two per resource keeps both chains busy while the
/// writer commits, and bounds memory.
const PAGES_IN_FLIGHT: usize = 4;
/// How often one pass may start a resource over after Graph said its state is lost.
const MAX_RESTARTS: u32 = 2;
/// At most this many pages, or this long, share one transaction when pages queue up.
const MAX_BATCH_PAGES: usize = 64;
const MAX_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(500);
/// How often the writer looks at the stop flag while it waits for a page.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Clone, Default)]
pub struct PassOptions {
    /// Start full rounds and reconcile, whatever delta links are stored (`sync --full`).
    pub full: bool,
    /// Beaten while the pass makes progress, for the systemd watchdog.
    pub heartbeat: Option<Heartbeat>,
}

#[derive(Debug, Clone)]
pub struct PassReport {
    pub run_id: i64,
    pub kind: &'static str,
    pub counts: Counts,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// One or both rounds failed; what was applied is committed and the pass resumes.
    #[error("{message}")]
    Failed {
        message: String,
        report: Box<PassReport>,
    },
    #[error("sync: stopped before the pass finished; it resumes from its last page")]
    Stopped { report: Box<PassReport> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs one pass and records it in `sync_runs`.
pub fn run_pass(
    config: &Config,
    store: &mut Store,
    graph: &Graph,
    options: PassOptions,
    shutdown: &Shutdown,
) -> Result<PassReport, SyncError> {
    let rounds: Vec<Round> = Resource::ALL
        .iter()
        .map(|&resource| Round::plan(config, store, resource, options.full))
        .collect::<Result<_, _>>()?;
    let planned_full = rounds.iter().any(|r| r.full);
    let kind = if planned_full { "full" } else { "incremental" };
    let run_id = store.begin_run(kind, &store::now())?;
    log::info!(
        "sync: pass {run_id} started ({})",
        rounds
            .iter()
            .map(Round::describe)
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut pass = Pass {
        run_id,
        counts: Counts::default(),
        failures: Vec::new(),
        stopped: false,
        restarted: false,
    };
    let outcome = pass.fetch_and_apply(store, graph, rounds, shutdown, options.heartbeat.as_ref());
    // A round that Graph sent back to the start made this a full (reconciling) pass.
    let kind = if pass.restarted { "full" } else { kind };
    let mut report = PassReport {
        run_id,
        kind,
        counts: pass.counts.clone(),
    };
    if let Err(e) = outcome {
        finish(store, &report, "failed", Some(e.to_string()))?;
        return Err(e.into());
    }
    if pass.stopped {
        finish(store, &report, "interrupted", Some("stopped".into()))?;
        return Err(SyncError::Stopped {
            report: Box::new(report),
        });
    }

    let team = team::update(store, &config.mapping, run_id, report.counts.touches_team())?;
    report.counts.team_added = team.added;
    report.counts.team_removed = team.removed;

    if pass.failures.is_empty() {
        finish(store, &report, "succeeded", None)?;
        log::info!(
            "sync: pass {run_id} {kind} succeeded: {}",
            summary(&report.counts)
        );
        Ok(report)
    } else {
        let message = pass.failures.join("; ");
        finish(store, &report, "failed", Some(message.clone()))?;
        Err(SyncError::Failed {
            message,
            report: Box::new(report),
        })
    }
}

fn finish(
    store: &mut Store,
    report: &PassReport,
    status: &'static str,
    error: Option<String>,
) -> Result<(), StoreError> {
    store.finish_run(&RunEnd {
        id: report.run_id,
        finished_at: store::now(),
        kind: report.kind,
        status,
        error,
        counts: report.counts.clone(),
    })
}

pub fn summary(c: &Counts) -> String {
    format!(
        "users +{} ~{} -{} restored {}; groups +{} ~{} -{} restored {}; memberships +{} -{}; team +{} -{}; {} pages",
        c.users_created,
        c.users_updated,
        c.users_deleted,
        c.users_restored,
        c.groups_created,
        c.groups_updated,
        c.groups_deleted,
        c.groups_restored,
        c.members_added,
        c.members_removed,
        c.team_added,
        c.team_removed,
        c.pages
    )
}

/// Where a resource's round starts, and whether it is full (and so reconciles at its end).
#[derive(Debug, Clone)]
struct Round {
    resource: Resource,
    url: String,
    full: bool,
    /// A new full round whose generation is taken with its first page.
    fresh: bool,
    generation: i64,
    query: String,
}

impl Round {
    fn plan(
        config: &Config,
        store: &Store,
        resource: Resource,
        full: bool,
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
        };
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
        } else if full {
            return Ok(round);
        } else if let Some(delta) = state.delta_link {
            round.url = delta;
            round.full = false;
            round.fresh = false;
        }
        Ok(round)
    }

    fn describe(&self) -> String {
        let what = match (self.full, self.fresh) {
            (true, true) => "full",
            (true, false) => "full, resumed",
            (false, _) => "incremental",
        };
        format!("{}: {what}", self.resource)
    }

    fn kind(&self) -> Kind {
        Kind::of(self.resource)
    }
}

enum Msg {
    Page(Resource, Page),
    /// Graph lost the delta state; the fetcher has started a full round from the initial URL.
    Restarted(Resource, GraphError),
    Failed(Resource, GraphError),
}

struct Pass {
    run_id: i64,
    counts: Counts,
    failures: Vec<String>,
    stopped: bool,
    restarted: bool,
}

impl Pass {
    fn fetch_and_apply(
        &mut self,
        store: &mut Store,
        graph: &Graph,
        rounds: Vec<Round>,
        shutdown: &Shutdown,
        heartbeat: Option<&Heartbeat>,
    ) -> Result<(), StoreError> {
        let (sender, receiver) = mpsc::sync_channel(PAGES_IN_FLIGHT);
        let mut by_resource = Vec::new();
        for round in rounds {
            let sender = sender.clone();
            let stop = shutdown.clone();
            let graph = graph.clone();
            let (resource, url, initial) = (
                round.resource,
                round.url.clone(),
                round.resource.initial_url(graph.endpoint()),
            );
            // Detached on purpose: on a stop the writer returns at once and a fetcher stuck
            // in a slow request ends with its timeout, its page never applied. It stays
            // enlisted under the pass's stop flag until it ends, so the daemon starts no new
            // pass while it lives (`Shutdown::working`).
            let working = shutdown.enlist();
            thread::Builder::new()
                .name(format!("fetch-{resource}"))
                .spawn(move || {
                    let _working = working;
                    fetch_round(&graph, resource, url, initial, &sender, &stop)
                })
                .map_err(|e| StoreError::Create {
                    path: "fetch thread".into(),
                    source: e,
                })?;
            by_resource.push(round);
        }
        drop(sender);

        // Pages are applied into an open transaction that commits as soon as no further
        // page is waiting (so against real Graph latency every page commits on its own), or
        // after MAX_BATCH_PAGES / MAX_BATCH_TIME when the writer falls behind. The resume link
        // commits with the pages it follows, so a crash still resumes exactly after the last
        // committed page.
        let mut batch: Option<Batch<'_>> = None;
        loop {
            if let Some(heartbeat) = heartbeat {
                heartbeat.beat();
            }
            if shutdown.is_requested() {
                self.stopped = true;
                break;
            }
            let message = if batch.is_some() {
                match receiver.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::TryRecvError::Empty) => {
                        commit(&mut batch)?;
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match receiver.recv_timeout(STOP_POLL) {
                    Ok(message) => message,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            match message {
                Msg::Page(resource, page) => {
                    if batch.is_none() {
                        batch = Some(Batch {
                            tx: store.transaction()?,
                            pages: 0,
                            started: Instant::now(),
                        });
                    }
                    let open = batch.as_mut().expect("a batch was opened above");
                    let round = round_mut(&mut by_resource, resource);
                    self.apply_page(&open.tx, round, page)?;
                    open.pages += 1;
                    if open.pages >= MAX_BATCH_PAGES || open.started.elapsed() >= MAX_BATCH_TIME {
                        commit(&mut batch)?;
                    }
                }
                Msg::Restarted(resource, reason) => {
                    let round = round_mut(&mut by_resource, resource);
                    log::warn!(
                        "sync: {reason}; running a full {resource} round with reconciliation"
                    );
                    self.restarted = true;
                    round.full = true;
                    round.fresh = true;
                }
                Msg::Failed(_, GraphError::Stopped) => self.stopped = true,
                Msg::Failed(resource, error) => {
                    // The caller reports the pass's failure; the daemon dedupes repeats.
                    log::debug!("sync: {resource} round failed: {error}");
                    self.failures.push(error.to_string());
                }
            }
        }
        // Whole pages only ever reach the batch, so what it holds is safe to keep.
        commit(&mut batch)?;
        if shutdown.is_requested() {
            self.stopped = true;
        }
        Ok(())
    }

    /// Applies one page, and the link that follows it, to the open transaction.
    fn apply_page(&mut self, tx: &Tx<'_>, round: &mut Round, page: Page) -> Result<(), StoreError> {
        let now = store::now();
        let inputs_before = self.counts.team_inputs();
        let generation = if round.fresh {
            tx.start_full_round(round.resource, &round.query, &now)?
        } else {
            round.generation
        };
        let mut apply = Apply {
            tx,
            run: self.run_id,
            now: &now,
            generation,
            counts: &mut self.counts,
            purged: Vec::new(),
        };
        for object in &page.objects {
            apply.object(round.kind(), object)?;
        }
        apply.finish_page()?;
        match &page.next {
            Next::More(link) => tx.set_resume_link(round.resource, link, round.full, &now)?,
            Next::Done(link) => {
                if round.full {
                    apply.reconcile(round.kind())?;
                }
                tx.set_delta_link(round.resource, link, &round.query, &now)?;
                log::info!(
                    "sync: {} round complete{}",
                    round.resource,
                    if round.full { " (reconciled)" } else { "" }
                );
            }
        }
        if self.counts.team_inputs() != inputs_before {
            tx.set_meta(team::DIRTY_KEY, "1")?;
        }
        self.counts.pages += 1;
        // The round's state follows the transaction; if it fails to commit, the pass fails.
        round.fresh = false;
        round.generation = generation;
        Ok(())
    }
}

/// Pages applied but not yet committed.
struct Batch<'s> {
    tx: Tx<'s>,
    pages: usize,
    started: Instant,
}

fn commit(batch: &mut Option<Batch<'_>>) -> Result<(), StoreError> {
    match batch.take() {
        Some(batch) => batch.tx.commit(),
        None => Ok(()),
    }
}

fn round_mut(rounds: &mut [Round], resource: Resource) -> &mut Round {
    rounds
        .iter_mut()
        .find(|r| r.resource == resource)
        .expect("a round is planned for every resource that has a fetcher")
}

/// Follows one delta chain to its deltaLink, one request in flight (Graph's guidance).
fn fetch_round(
    graph: &Graph,
    resource: Resource,
    mut url: String,
    initial: String,
    sender: &mpsc::SyncSender<Msg>,
    stop: &Shutdown,
) {
    let mut restarts = 0;
    loop {
        // A stopped pass makes no further request, even if its writer has not noticed yet.
        if stop.is_requested() {
            let _ = sender.send(Msg::Failed(resource, GraphError::Stopped));
            return;
        }
        match graph.get_page(resource, &url) {
            Ok(page) => {
                let next = page.next.clone();
                if sender.send(Msg::Page(resource, page)).is_err() {
                    return; // the writer stopped
                }
                match next {
                    Next::More(link) => url = link,
                    Next::Done(_) => return,
                }
            }
            Err(error) if error.is_delta_state_lost() && restarts < MAX_RESTARTS => {
                restarts += 1;
                url = initial.clone();
                if sender.send(Msg::Restarted(resource, error)).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = sender.send(Msg::Failed(resource, error));
                return;
            }
        }
    }
}

/// Applies objects to one transaction and counts what changed.
struct Apply<'a, 't> {
    tx: &'a Tx<'t>,
    run: i64,
    now: &'a str,
    generation: i64,
    counts: &'a mut Counts,
    /// Objects deleted permanently on this page, whose memberships go at its end.
    purged: Vec<String>,
}

impl Apply<'_, '_> {
    fn object(&mut self, kind: Kind, object: &DirectoryObject) -> Result<(), StoreError> {
        match object.removed {
            Some(removal) => self.remove(kind, &object.id, removal)?,
            None => self.upsert(kind, object)?,
        }
        if let Some(members) = &object.members
            && object.removed.is_none()
        {
            for member in members {
                self.membership(&object.id, member)?;
            }
        }
        Ok(())
    }

    fn upsert(&mut self, kind: Kind, object: &DirectoryObject) -> Result<(), StoreError> {
        let entity = kind.entity();
        let Some(stored) = self.tx.object(kind, &object.id)? else {
            self.tx.put_object(
                kind,
                &object.id,
                &object.props,
                true,
                self.generation,
                self.now,
            )?;
            self.tx
                .audit(self.run, self.now, entity, &object.id, "created", None)?;
            *self.count(kind, "created") += 1;
            return Ok(());
        };
        let (merged, changes) = merge(&stored.attributes, &object.props);
        let restored = stored.deletion.is_some();
        if restored {
            self.tx
                .audit(self.run, self.now, entity, &object.id, "restored", None)?;
            *self.count(kind, "restored") += 1;
        }
        if !changes.is_empty() {
            self.tx.audit(
                self.run,
                self.now,
                entity,
                &object.id,
                "updated",
                Some(&Value::Object(changes)),
            )?;
            *self.count(kind, "updated") += 1;
        }
        if restored || merged != stored.attributes {
            self.tx
                .put_object(kind, &object.id, &merged, false, self.generation, self.now)?;
        } else {
            self.tx.mark_seen(kind, &object.id, self.generation)?;
        }
        Ok(())
    }

    fn remove(&mut self, kind: Kind, id: &str, removal: Removal) -> Result<(), StoreError> {
        let Some(stored) = self.tx.object(kind, id)? else {
            return Ok(()); // a removal for an object we never had is a no-op (3.7)
        };
        // Replays change nothing, and a permanent deletion is never softened.
        let already = matches!(
            (stored.deletion, removal),
            (Some(Removal::Permanent), _) | (Some(Removal::Soft), Removal::Soft)
        );
        if !already {
            self.tx.tombstone(kind, id, removal, self.now)?;
            let detail = json!({ "deletion": removal.as_str() });
            self.tx.audit(
                self.run,
                self.now,
                kind.entity(),
                id,
                "deleted",
                Some(&detail),
            )?;
            if stored.deletion.is_none() {
                *self.count(kind, "deleted") += 1;
            }
        }
        // Soft-deleted objects keep their memberships, hidden by the tombstone, because
        // Graph will not report them again on restore (3.8). Permanent ones lose them.
        if removal == Removal::Permanent {
            self.purged.push(id.to_owned());
        }
        Ok(())
    }

    /// Drops the memberships of the objects this page purged, in one scan.
    fn finish_page(&mut self) -> Result<(), StoreError> {
        if self.purged.is_empty() {
            return Ok(());
        }
        let purged = std::mem::take(&mut self.purged);
        for (group, member, member_type) in self.tx.remove_memberships_of(&purged)? {
            self.membership_removed(&group, &member, &member_type)?;
        }
        Ok(())
    }

    fn membership(&mut self, group: &str, member: &MemberChange) -> Result<(), StoreError> {
        if member.removed {
            if self.tx.remove_member(group, &member.id)? {
                self.membership_removed(group, &member.id, &member.kind)?;
            }
        } else {
            let kind = self.member_kind(member)?;
            if !self
                .tx
                .add_member(group, &member.id, &kind, self.generation, self.now)?
            {
                return Ok(());
            }
            let detail = json!({ "group": group, "type": kind });
            self.tx.audit(
                self.run,
                self.now,
                "membership",
                &member.id,
                "added",
                Some(&detail),
            )?;
            self.counts.members_added += 1;
        }
        Ok(())
    }

    /// The member's type from its `@odata.type`; without one (not seen from Graph, but
    /// cheap to survive), from what the database knows of the id.
    fn member_kind(&self, member: &MemberChange) -> Result<String, StoreError> {
        if member.kind != "unknown" {
            return Ok(member.kind.clone());
        }
        for kind in [Kind::User, Kind::Group] {
            if self.tx.object(kind, &member.id)?.is_some() {
                return Ok(kind.entity().to_owned());
            }
        }
        Ok(member.kind.clone())
    }

    fn membership_removed(
        &mut self,
        group: &str,
        member: &str,
        member_type: &str,
    ) -> Result<(), StoreError> {
        let detail = json!({ "group": group, "type": member_type });
        self.tx.audit(
            self.run,
            self.now,
            "membership",
            member,
            "removed",
            Some(&detail),
        )?;
        self.counts.members_removed += 1;
        Ok(())
    }

    /// End of a complete full round: whatever it did not report is gone from the tenant.
    fn reconcile(&mut self, kind: Kind) -> Result<(), StoreError> {
        let missing = self.tx.unseen_objects(kind, self.generation)?;
        if !missing.is_empty() {
            log::info!(
                "sync: reconciliation: {} {}s no longer in the tenant",
                missing.len(),
                kind.entity()
            );
        }
        for id in missing {
            // Not reported by a full round: deleted while we were not looking. Whether it
            // still sits in deleted items is unknown, so it is marked restorable ('soft').
            self.tx.tombstone(kind, &id, Removal::Soft, self.now)?;
            let detail = json!({ "deletion": "soft", "reason": "not reported by a full pass" });
            self.tx.audit(
                self.run,
                self.now,
                kind.entity(),
                &id,
                "deleted",
                Some(&detail),
            )?;
            *self.count(kind, "deleted") += 1;
        }
        if kind == Kind::Group {
            for (group, member, member_type) in self.tx.sweep_memberships(self.generation)? {
                self.membership_removed(&group, &member, &member_type)?;
            }
        }
        Ok(())
    }

    fn count(&mut self, kind: Kind, what: &str) -> &mut u64 {
        let c = &mut *self.counts;
        match (kind, what) {
            (Kind::User, "created") => &mut c.users_created,
            (Kind::User, "updated") => &mut c.users_updated,
            (Kind::User, "deleted") => &mut c.users_deleted,
            (Kind::User, _) => &mut c.users_restored,
            (Kind::Group, "created") => &mut c.groups_created,
            (Kind::Group, "updated") => &mut c.groups_updated,
            (Kind::Group, "deleted") => &mut c.groups_deleted,
            (Kind::Group, _) => &mut c.groups_restored,
        }
    }
}

/// Merges a delta payload into stored attributes: absent = unchanged, null = cleared, a
/// value = set. Returns the merged attributes and the changes as
/// `{"property": {"old": ..., "new": ...}}`.
pub fn merge(
    stored: &Map<String, Value>,
    incoming: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut merged = stored.clone();
    let mut changes = Map::new();
    for (key, new) in incoming {
        let old = stored.get(key);
        let same = match old {
            Some(old) => old == new,
            None => new.is_null(),
        };
        if !same {
            changes.insert(
                key.clone(),
                json!({ "old": old.cloned().unwrap_or(Value::Null), "new": new }),
            );
        }
        merged.insert(key.clone(), new.clone());
    }
    (merged, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn merge_rules() {
        #[track_caller]
        fn check(stored: &str, incoming: &str, merged: &str, changes: &str) {
            let (m, c) = merge(&map(stored), &map(incoming));
            assert_eq!(m, map(merged), "merged");
            assert_eq!(c, map(changes), "changes");
        }
        // absent = unchanged
        check(
            r#"{"a":"x","b":"y"}"#,
            r#"{"a":"x"}"#,
            r#"{"a":"x","b":"y"}"#,
            "{}",
        );
        // null = cleared
        check(
            r#"{"a":"x","b":"y"}"#,
            r#"{"b":null}"#,
            r#"{"a":"x","b":null}"#,
            r#"{"b":{"old":"y","new":null}}"#,
        );
        // value = set
        check(
            r#"{"a":"x"}"#,
            r#"{"a":"z"}"#,
            r#"{"a":"z"}"#,
            r#"{"a":{"old":"x","new":"z"}}"#,
        );
        // a null for a never-set property is no change
        check("{}", r#"{"a":null}"#, r#"{"a":null}"#, "{}");
        // replaying the same payload changes nothing
        check(r#"{"a":"z"}"#, r#"{"a":"z"}"#, r#"{"a":"z"}"#, "{}");
    }
}
