//! One sync pass: a delta round for users and one for groups, fetched on two threads
//! (`fetch`) and applied by this thread, page by page, each page in a transaction with its
//! resume link (pages share one only while more are already waiting).
//!
//! Each page is planned before it is applied: one batched lookup of the rows it touches,
//! the pure rules of `plan` turn page and rows into changes, and `store` applies them.
//! Where a round starts is `round`. Memory stays bounded by the channel: a few pages,
//! whatever the tenant size.

mod commands;
mod dry_run;
mod fetch;
pub mod plan;
mod pool;
mod round;
mod snapshot;
mod stuck;

pub use commands::{approve_deletions, remap_team};
pub use dry_run::dry_run;

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::config::{Config, FullPass};
use crate::graph::{Graph, GraphError, Next, Page, Resource};
use crate::guard::{Guard, Target};
use crate::shutdown::Shutdown;
use crate::store::{self, Change, Counts, Kind, Purpose, RunEnd, Stamp, Store, StoreError, Tx};
use crate::systemd::Heartbeat;
use crate::team;

use fetch::{Msg, fetch_round};
use round::Round;
use stuck::{MAX_STUCK_PASSES, Stuck};

/// Pages fetched ahead of the writer. Two per resource keeps both chains busy while the
/// writer commits, and bounds memory.
const PAGES_IN_FLIGHT: usize = 4;
/// At most this many pages, or this long, share one transaction when pages queue up.
const MAX_BATCH_PAGES: usize = 64;
const MAX_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a snapshot's open batch waits for a further answer before it commits. Each
/// commit of a first import rewrites the leaves its random ids touch in the id indexes;
/// committing whenever no answer was waiting made 400 of the 480 commits of full-100k
/// single answers, and the import wrote 525 MiB for a 108 MB database; waiting up to this
/// long, 315 MiB (250 ms: 260-290 MiB, for a longer window of work a crash loses and a
/// killed snapshot redoes).
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);
/// How often the writer looks at the stop flag while it waits for a page.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);
// A batch waits in one step, so no longer than the writer goes between looks at the stop
// flag.
const _: () = assert!(LINGER.as_millis() <= STOP_POLL.as_millis());

#[derive(Clone, Default)]
pub struct PassOptions {
    /// Start full rounds and reconcile, whatever delta links are stored (`sync --full`).
    pub full: bool,
    /// Beaten while the pass makes progress, for the systemd watchdog.
    pub heartbeat: Option<Heartbeat>,
    /// No deletion limit for this pass (`sync --allow-deletions`).
    pub allow_deletions: bool,
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
    /// Everything else applied, but the deletion guard held deletions (and said why).
    #[error("{message}")]
    Held {
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
    let stuck = Stuck::load(store)?;
    let rounds: Vec<Round> = Resource::ALL
        .iter()
        .map(|&resource| {
            let restart = stuck.passes(resource) >= MAX_STUCK_PASSES;
            if restart {
                log::warn!(
                    "sync: {resource}: Graph sent a page that cannot be used at the same link in \
                     {MAX_STUCK_PASSES} passes in a row; starting the {resource} round over with \
                     a full round"
                );
            }
            Round::plan(config, store, resource, options.full, restart)
        })
        .collect::<Result<_, _>>()?;
    let guard = Guard::load(
        store,
        config.sync.max_deletions,
        &config.mapping.team,
        options.allow_deletions,
    )?;
    // A snapshot under way is a full round too: starting it cleared the resource's links.
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
        failed: Vec::new(),
        completed: Vec::new(),
        stopped: false,
        restarted: false,
        guard,
        unusable: Vec::new(),
        lost: Vec::new(),
    };
    let env = Env {
        config,
        store,
        graph,
        shutdown,
        heartbeat: options.heartbeat.as_ref(),
    };
    let outcome = pass.run(&env, rounds);
    stuck.after(store, &pass.unusable, &pass.completed)?;
    // A round that Graph sent back to the start made this a full (reconciling) pass.
    let kind = if pass.restarted { "full" } else { kind };
    let mut report = PassReport {
        run_id,
        kind,
        counts: pass.counts.clone(),
    };
    if let Err(e) = outcome {
        pass.guard.save(store, run_id, false)?;
        finish(store, &report, "failed", Some(e.to_string()))?;
        return Err(e.into());
    }
    if pass.stopped {
        pass.guard.save(store, run_id, false)?;
        finish(store, &report, "interrupted", Some("stopped".into()))?;
        return Err(SyncError::Stopped {
            report: Box::new(report),
        });
    }

    let team = team::update(
        store,
        &config.mapping,
        run_id,
        report.counts.touches_team(),
        &mut pass.guard,
    )?;
    report.counts.team_added = team.added;
    report.counts.team_removed = team.removed;
    pass.guard.save(store, run_id, pass.failures.is_empty())?;

    if let Some(held) = pass.guard.message() {
        // What was held comes first: the systemd STATUS line shows the start of the error.
        log::error!("sync: pass {run_id}: {held}");
        let message = [held.clone()]
            .into_iter()
            .chain(pass.failures.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ");
        finish(store, &report, "failed", Some(message.clone()))?;
        let report = Box::new(report);
        return Err(if pass.failures.is_empty() {
            SyncError::Held { message, report }
        } else {
            SyncError::Failed { message, report }
        });
    }
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

/// What a pass works with: its configuration, database, Graph client and stop flag.
struct Env<'a> {
    config: &'a Config,
    store: &'a Store,
    graph: &'a Graph,
    shutdown: &'a Shutdown,
    heartbeat: Option<&'a Heartbeat>,
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

struct Pass {
    run_id: i64,
    /// What committed batches changed.
    counts: Counts,
    failures: Vec<String>,
    /// Resources whose round failed (and said why in `failures`).
    failed: Vec<Resource>,
    /// Resources whose round reached its deltaLink, committed.
    completed: Vec<Resource>,
    stopped: bool,
    restarted: bool,
    guard: Guard,
    /// Rounds that failed on a page that cannot be used, with the link that sent it.
    unusable: Vec<(Resource, String)>,
    /// Rounds whose delta state Graph lost while full passes are snapshots: they start
    /// over with a snapshot (with why, for when they may not).
    lost: Vec<(Resource, String)>,
}

/// How often one pass may start a resource over after Graph lost its delta state.
const MAX_RESTARTS: u32 = 2;

impl Pass {
    /// The pass's rounds: full ones by snapshot (then their catch-up) unless the config
    /// asks for the delta chain, incremental ones as they are, then the re-read of the
    /// groups a catch-up reported. A resource whose delta state is lost starts over.
    fn run(&mut self, env: &Env<'_>, mut rounds: Vec<Round>) -> Result<(), StoreError> {
        let by_snapshot = env.config.sync.full_pass == FullPass::Snapshot;
        let mut restarts = 0;
        loop {
            if by_snapshot {
                rounds = self.snapshot_rounds(env, rounds)?;
                if self.stopped {
                    return Ok(());
                }
            }
            if !rounds.is_empty() {
                self.fetch_and_apply(env, rounds, !by_snapshot)?;
            }
            self.recheck(env)?;
            let lost = std::mem::take(&mut self.lost);
            if lost.is_empty() || self.stopped {
                return Ok(());
            }
            if restarts >= MAX_RESTARTS {
                for (resource, why) in lost {
                    self.failures.push(why);
                    self.failed.push(resource);
                }
                return Ok(());
            }
            restarts += 1;
            self.restarted = true;
            rounds = lost
                .iter()
                .map(|(resource, why)| {
                    log::warn!("sync: {why}; running a {resource} snapshot with reconciliation");
                    Round::plan(env.config, env.store, *resource, true, true)
                })
                .collect::<Result<_, _>>()?;
        }
    }

    /// Runs the snapshots the full rounds among `rounds` call for, and returns the rounds
    /// left to run: each completed snapshot's catch-up, and the incremental rounds.
    fn snapshot_rounds(
        &mut self,
        env: &Env<'_>,
        rounds: Vec<Round>,
    ) -> Result<Vec<Round>, StoreError> {
        let wanted: Vec<(Resource, String)> = rounds
            .iter()
            .filter(|r| r.full && r.fresh)
            .map(|r| (r.resource, r.query.clone()))
            .collect();
        if wanted.is_empty() {
            return Ok(rounds);
        }
        let completed = self.snapshot(env, &wanted)?;
        let mut left = Vec::new();
        for round in rounds {
            let resource = round.resource;
            if !wanted.iter().any(|(r, _)| *r == resource) {
                left.push(round);
            } else if completed.contains(&resource) {
                // Incremental now, from the link the snapshot took first.
                left.push(Round::plan(env.config, env.store, resource, false, false)?);
            }
            // Otherwise it failed (and said why) or the guard holds its reconciliation.
        }
        Ok(left)
    }

    fn fetch_and_apply(
        &mut self,
        env: &Env<'_>,
        rounds: Vec<Round>,
        restart_in_place: bool,
    ) -> Result<(), StoreError> {
        let (graph, shutdown) = (env.graph, env.shutdown);
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
                    let start = fetch::Start {
                        url,
                        initial,
                        restart_in_place,
                    };
                    fetch_round(&graph, resource, start, &sender, &stop)
                })
                .map_err(|e| StoreError::Create {
                    path: "fetch thread".into(),
                    source: e,
                })?;
            by_resource.push(round);
        }
        drop(sender);
        self.receive(
            env.store,
            &receiver,
            &mut by_resource,
            shutdown,
            env.heartbeat,
        )
    }

    /// The writer: applies what the fetchers send until both have ended.
    fn receive(
        &mut self,
        store: &Store,
        receiver: &mpsc::Receiver<Msg>,
        by_resource: &mut [Round],
        shutdown: &Shutdown,
        heartbeat: Option<&Heartbeat>,
    ) -> Result<(), StoreError> {
        // Pages are applied into an open transaction that commits as soon as no further
        // page is waiting (so against real Graph latency every page commits on its own), or
        // after MAX_BATCH_PAGES / MAX_BATCH_TIME when the writer falls behind. The resume link
        // commits with the pages it follows, so a crash still resumes exactly after the last
        // committed page.
        let mut batch: Option<Batch<'_>> = None;
        // A full groups round's last page, held until the users round has reconciled.
        let mut waiting: Option<Page> = None;
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
                        self.commit(&mut batch)?;
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
                    if self.waits_for_users(resource, &page, batch.as_ref(), by_resource) {
                        log::debug!(
                            "sync: groups: the full round's last page waits for the users round"
                        );
                        waiting = Some(page);
                        continue;
                    }
                    if batch.is_none() {
                        batch = Some(Batch::open(store)?);
                    }
                    let open = batch.as_mut().expect("a batch was opened above");
                    self.apply_page(open, round_mut(by_resource, resource), page)?;
                    open.pages += 1;
                    if resource == Resource::Users
                        && !self.users_pending(Some(open), by_resource)
                        && let Some(page) = waiting.take()
                    {
                        self.apply_page(open, round_mut(by_resource, Resource::Groups), page)?;
                        open.pages += 1;
                    }
                    if open.pages >= MAX_BATCH_PAGES || open.started.elapsed() >= MAX_BATCH_TIME {
                        self.commit(&mut batch)?;
                    }
                }
                Msg::Restarted(resource, reason) => {
                    let round = round_mut(by_resource, resource);
                    log::warn!(
                        "sync: {reason}; running a full {resource} round with reconciliation"
                    );
                    self.restarted = true;
                    round.full = true;
                    round.fresh = true;
                }
                Msg::Lost(resource, error) => {
                    self.lost.push((resource, error.to_string()));
                }
                Msg::Failed(_, GraphError::Stopped, _) => self.stopped = true,
                Msg::Failed(resource, error, url) => {
                    if error.is_unusable_page() {
                        self.unusable.push((resource, url));
                    }
                    // The caller reports the pass's failure; the daemon dedupes repeats.
                    log::debug!("sync: {resource} round failed: {error}");
                    self.failures.push(error.to_string());
                    self.failed.push(resource);
                }
            }
        }
        // Whole pages only ever reach the batch, so what it holds is safe to keep.
        self.commit(&mut batch)?;
        if shutdown.is_requested() {
            self.stopped = true;
        }
        if waiting.is_some() && !self.stopped {
            self.failures.push(
                "sync: groups: the full round is read, but its reconciliation waits for a \
                 complete users round (which failed or was held, as said above): without it, \
                 the memberships of users deleted meanwhile would be dropped; the next pass \
                 reads the round's last page again"
                    .to_owned(),
            );
            self.failed.push(Resource::Groups);
        }
        self.fail_unfinished(by_resource);
        Ok(())
    }

    /// Whether `page` is a full groups round's last, which must wait while the users round
    /// of the pass is pending: a full round leaves out the links of soft-deleted users
    /// (3.11), and reconciliation keeps them only once the users round has marked those
    /// users soft. Otherwise it would drop them, and a restore never reports them again
    /// (3.8).
    fn waits_for_users(
        &self,
        resource: Resource,
        page: &Page,
        batch: Option<&Batch<'_>>,
        rounds: &[Round],
    ) -> bool {
        resource == Resource::Groups
            && matches!(page.next, Next::Done(_))
            && rounds.iter().any(|r| r.resource == resource && r.full)
            && self.users_pending(batch, rounds)
    }

    /// Whether this pass has a users round that has not reached its deltaLink, or whose
    /// deletions the guard held.
    fn users_pending(&self, batch: Option<&Batch<'_>>, rounds: &[Round]) -> bool {
        let Some(users) = rounds.iter().find(|r| r.resource == Resource::Users) else {
            return false;
        };
        let done = self.completed.contains(&Resource::Users)
            || batch.is_some_and(|b| b.completed.contains(&Resource::Users));
        !done || users.held
    }

    /// A round is complete only at its deltaLink: a fetcher that ended without one, and
    /// without saying why (it panicked, or its channel closed early), fails the pass
    /// instead of passing for done. Its resume link stays, so the next pass continues.
    fn fail_unfinished(&mut self, rounds: &[Round]) {
        if self.stopped {
            return;
        }
        for round in rounds {
            let resource = round.resource;
            let lost = self.lost.iter().any(|(r, _)| *r == resource);
            if !self.completed.contains(&resource) && !self.failed.contains(&resource) && !lost {
                log::error!("sync: the {resource} fetcher ended before its round was complete");
                self.failures.push(format!(
                    "sync: the {resource} round ended before Graph sent its deltaLink (the fetch \
                     thread stopped unexpectedly; the log above says why); the next pass resumes \
                     from the last committed page"
                ));
                self.failed.push(resource);
            }
        }
    }

    /// The deletion guard's word on planned changes: all of them, or all but the held
    /// deletions (with the purges they would cause). A held reconciliation is held whole.
    fn judge(&mut self, round: &mut Round, changes: Vec<Change>, reconciling: bool) -> Vec<Change> {
        let (changes, held) = self.judge_kind(round.kind(), changes, reconciling);
        round.held |= held;
        changes
    }

    /// [`Pass::judge`] for changes of `kind`; true when something was held.
    fn judge_kind(
        &mut self,
        kind: Kind,
        changes: Vec<Change>,
        reconciling: bool,
    ) -> (Vec<Change>, bool) {
        let target = match kind {
            Kind::User => Target::Users,
            Kind::Group => Target::Groups,
        };
        if self.guard.allow(target, plan::deletions(&changes, kind)) {
            return (changes, false);
        }
        if reconciling {
            (Vec::new(), true)
        } else {
            (plan::without_deletions(changes, kind), true)
        }
    }

    /// Plans one page, and applies the changes and the link that follows it to the open
    /// transaction. Its counts wait in the batch until the batch commits.
    fn apply_page(
        &mut self,
        batch: &mut Batch<'_>,
        round: &mut Round,
        mut page: Page,
    ) -> Result<(), StoreError> {
        let tx = &batch.tx;
        let now = store::now();
        let kind = round.kind();
        if round.fresh {
            let state = tx.start_full_round(round.resource, &round.query, &now)?;
            (round.generation, round.baseline) = (state.generation, state.baseline);
        }
        let stamp = Stamp {
            run: self.run_id,
            generation: round.generation,
            now: &now,
            baseline: round.baseline,
        };
        let lookup = tx.lookup(kind, &plan::wanted(&page.objects))?;
        let planned = plan::page(kind, &mut page.objects, lookup, round.generation);
        let changes = self.judge(round, planned, false);
        apply_changes(tx, &changes, &stamp, &mut batch.counts)?;
        if round.catchup && kind == Kind::Group {
            // The catch-up after a snapshot: every group it reports is re-read whole once
            // the round is complete (3.11 (b)), queued with the page so a crash keeps it.
            let reported: Vec<&str> = page
                .objects
                .iter()
                .filter(|o| o.removed.is_none())
                .map(|o| o.id.as_str())
                .collect();
            tx.queue_groups(&reported, Purpose::Recheck)?;
        }
        match &page.next {
            // A held round keeps its link, so the held deletions come again.
            Next::More(_) if round.held => {}
            Next::More(link) => tx.set_resume_link(round.resource, link, round.full, &now)?,
            Next::Done(link) => {
                if round.full && !round.held {
                    // Reconciliation reads what the round left unseen, so it follows the
                    // page's own changes.
                    let planned = plan::reconcile(kind, tx.unseen(kind, round.generation)?);
                    if !planned.is_empty() {
                        log::info!(
                            "sync: reconciliation: {} {} changes for what the full round did \
                             not report",
                            planned.len(),
                            kind.entity()
                        );
                    }
                    let changes = self.judge(round, planned, true);
                    apply_changes(tx, &changes, &stamp, &mut batch.counts)?;
                }
                if round.held {
                    log::warn!(
                        "sync: {} round complete, but the deletion guard held deletions: its \
                         link stays, so they come again in the next pass",
                        round.resource
                    );
                } else {
                    if round.baseline && kind == Kind::Group {
                        audit_baseline(tx, self.run_id, &now)?;
                    }
                    tx.set_delta_link(round.resource, link, &round.query, &now)?;
                    log::info!(
                        "sync: {} round complete{}",
                        round.resource,
                        if round.full { " (reconciled)" } else { "" }
                    );
                }
                batch.completed.push(round.resource);
            }
        }
        batch.counts.pages += 1;
        // The round's state follows the transaction; if it fails to commit, the pass fails.
        round.fresh = false;
        Ok(())
    }
}

/// Applies changes to the open transaction, counts them, and marks the team for a recompute
/// when they touch what it is made of.
fn apply_changes(
    tx: &Tx<'_>,
    changes: &[Change],
    stamp: &Stamp<'_>,
    counts: &mut Counts,
) -> Result<(), StoreError> {
    tx.apply(changes, stamp)?;
    let before = counts.team_inputs();
    plan::tally(changes, counts);
    if counts.team_inputs() != before {
        tx.set_meta(team::DIRTY_KEY, "1")?;
    }
    Ok(())
}

/// Ends a first import (a baseline): one audit row per group for the members it came with.
fn audit_baseline(tx: &Tx<'_>, run: i64, now: &str) -> Result<(), StoreError> {
    let groups = tx.audit_baseline(run, now)?;
    log::info!(
        "sync: first import: the members of {groups} groups audited as a baseline (one event \
         per group)"
    );
    Ok(())
}

/// Pages applied but not yet committed, with what they changed.
struct Batch<'s> {
    tx: Tx<'s>,
    pages: usize,
    started: Instant,
    /// Counted into the pass only once committed: a batch that rolls back changed nothing.
    counts: Counts,
    /// Rounds whose deltaLink this batch stores.
    completed: Vec<Resource>,
}

impl<'s> Batch<'s> {
    /// How long this batch waits for a further answer while `in_flight` requests are out:
    /// until it is `LINGER` old; not at all when none is out.
    fn linger(&self, in_flight: usize) -> Option<std::time::Duration> {
        linger_wait(self.started.elapsed(), in_flight)
    }

    fn open(store: &'s Store) -> Result<Batch<'s>, StoreError> {
        Ok(Batch {
            tx: store.transaction()?,
            pages: 0,
            started: Instant::now(),
            counts: Counts::default(),
            completed: Vec::new(),
        })
    }
}

impl Pass {
    /// Commits the open batch, if any, and only then counts what it changed.
    fn commit(&mut self, batch: &mut Option<Batch<'_>>) -> Result<(), StoreError> {
        let Some(batch) = batch.take() else {
            return Ok(());
        };
        batch.tx.commit()?;
        self.counts.add(&batch.counts);
        self.completed.extend(batch.completed);
        Ok(())
    }
}

fn linger_wait(age: std::time::Duration, in_flight: usize) -> Option<std::time::Duration> {
    let left = LINGER.checked_sub(age).filter(|left| !left.is_zero())?;
    (in_flight > 0).then_some(left)
}

fn round_mut(rounds: &mut [Round], resource: Resource) -> &mut Round {
    rounds
        .iter_mut()
        .find(|r| r.resource == resource)
        .expect("a round is planned for every resource that has a fetcher")
}

#[cfg(test)]
mod tests;
