//! A full pass by snapshot (graph-protocol.md 3.11), the default: the delta links "from
//! now" first, then the tenant listed in parallel with the non-delta endpoints (`/users` in
//! partitions, `/groups`, each group's `/members` in `$batch`es), reconciled once complete,
//! then a catch-up round from those links (`Pass::run`), whose groups are re-read whole
//! (`Pass::recheck`).
//!
//! Workers fetch (`pool`); this thread alone writes. Each answer is applied in one
//! transaction with the progress it makes (`store::progress`), so a killed snapshot resumes
//! with the chains and groups it had not finished, and nothing is reconciled before the
//! listing is complete.

mod recheck;
mod work;

use super::pool::{Answer, Pool, Task};
use super::{
    Batch, Env, MAX_BATCH_PAGES, MAX_BATCH_TIME, Pass, STOP_POLL, apply_changes, audit_baseline,
    plan,
};
use crate::graph::{Graph, GraphError, ListPage, MembersPage, Next, Resource};
use crate::store::{self, Counts, Kind, Purpose, SnapshotState, Stamp, StoreError, Tx};
use work::Work;

/// Items in one `$batch` request: Graph's limit (3.11).
const BATCH_ITEMS: usize = 20;
/// The one chain of a resource that is not partitioned.
const ALL: &str = "all";
/// Pages a "latest" round may take before its deltaLink (Graph sends none: 3.1).
const MAX_LATEST_PAGES: usize = 100;

/// One resource's snapshot as the writer follows it.
struct Listing {
    resource: Resource,
    state: SnapshotState,
    baseline: bool,
}

/// The word for groups whose member list Graph refused with 403 while it listed others'.
fn warn_refused(groups: &[String]) {
    const NAMED: usize = 5;
    let mut named = groups[..groups.len().min(NAMED)].join(", ");
    if groups.len() > NAMED {
        named.push_str(&format!(" and {} more", groups.len() - NAMED));
    }
    log::warn!(
        "sync: groups: Graph refused to list the members of {} group{} (HTTP 403): {named}. A \
         group with hidden membership needs the application permission Member.Read.Hidden: in \
         the Entra admin center open App registrations > the app > API permissions, add it \
         and click \"Grant admin consent\". Their stored memberships are kept as they are",
        groups.len(),
        if groups.len() == 1 { "" } else { "s" },
    );
}

/// The snapshot's and the re-read's word for a member list read again from its first page
/// after a 404 at its nextLink.
fn warn_relisting_after_404(group: &str) {
    log::warn!(
        "sync: groups: Graph answered 404 to the link of group {group}'s member list; reading \
         its members again from the first page"
    );
}

/// The filters a resource's listing is split by, or the one chain [`ALL`].
fn chain_names(resource: Resource) -> Vec<String> {
    let partitions = resource.partitions();
    if partitions.is_empty() {
        vec![ALL.to_owned()]
    } else {
        partitions
    }
}

fn start_url(endpoint: &str, resource: Resource, chain: &str) -> String {
    let filter = (chain != ALL).then_some(chain);
    resource.list_url(endpoint, filter)
}

impl Pass {
    /// Runs the snapshots of `rounds`' resources (resuming one under way for the same
    /// query). Returns the resources whose snapshot completed: reconciled, with the catch-up
    /// link stored as their delta link.
    pub(super) fn snapshot(
        &mut self,
        env: &Env<'_>,
        resources: &[(Resource, String)],
    ) -> Result<Vec<Resource>, StoreError> {
        let mut resumed = Vec::new();
        for (resource, query) in resources {
            let state = env.store.snapshot_state(*resource)?;
            resumed.push(state.filter(|s| s.query == *query));
        }
        // The links "from now" of the new snapshots, taken side by side: one round trip.
        // Per resource: `None` when resumed; `Some(None)` when the thread panicked.
        let links: Vec<Option<Option<Result<String, GraphError>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = resources
                .iter()
                .zip(&resumed)
                .map(|((resource, _), resumed)| {
                    let graph = env.graph.clone();
                    let resource = *resource;
                    resumed
                        .is_none()
                        .then(|| scope.spawn(move || latest_link(&graph, resource)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.map(|h| h.join().ok()))
                .collect()
        });
        let mut listings = Vec::new();
        for (((resource, query), resumed), link) in resources.iter().zip(resumed).zip(links) {
            let link = match link {
                None => None,
                Some(Some(link)) => Some(link),
                Some(None) => {
                    // The thread panicked (the log says why): a failed pass, not a stop.
                    self.failures.push(format!(
                        "sync: {resource}: the request for the snapshot's \"latest\" link ended \
                         unexpectedly (the log above says why); the next pass tries again"
                    ));
                    self.failed.push(*resource);
                    continue;
                }
            };
            if let Some(listing) = self.open_listing(env, *resource, query, resumed, link)? {
                listings.push(listing);
            }
        }
        if listings.is_empty() {
            return Ok(Vec::new());
        }
        let mut work = Work::default();
        for listing in &listings {
            for chain in env.store.snapshot_chains(listing.resource)? {
                work.chains
                    .insert((listing.resource, chain.name), (chain.next_link, false));
            }
            if listing.resource == Resource::Groups {
                for (group, next) in env.store.snapshot_groups(Purpose::Snapshot)? {
                    work.queue(&group, next);
                }
            }
        }
        self.list(env, &listings, &mut work)?;
        if work.failed || self.stopped {
            return Ok(Vec::new());
        }
        if !work.is_done() {
            // The workers ended without being asked to (one panicked): never a silent
            // success. What was applied stays, and the next pass resumes the snapshot.
            log::error!("sync: the snapshot's fetch workers ended before the listing was complete");
            for listing in &listings {
                self.failures.push(format!(
                    "sync: the {} snapshot ended before its listing was complete (its fetch \
                     workers stopped unexpectedly; the log above says why); the next pass \
                     resumes it",
                    listing.resource
                ));
                self.failed.push(listing.resource);
            }
            return Ok(Vec::new());
        }
        if !self.settle_refused(env, &listings, &mut work)? {
            return Ok(Vec::new());
        }
        self.complete(env, &listings)
    }

    /// Groups whose member list Graph refused (403) while it listed those of others: a group
    /// with hidden membership, which needs Member.Read.Hidden (graph-protocol.md 7). Their
    /// stored links are kept (marked seen, as nothing says they changed) and the snapshot
    /// goes on, with a warning that names them. When every member list was refused, it is
    /// the group permission that is missing: the pass fails as for any 403, and the groups
    /// stay queued for when it is granted. Returns whether the snapshot goes on.
    fn settle_refused(
        &mut self,
        env: &Env<'_>,
        listings: &[Listing],
        work: &mut Work,
    ) -> Result<bool, StoreError> {
        let Some(refusal) = work.refusal.take() else {
            return Ok(true);
        };
        if work.members_read == 0 {
            self.fail(Resource::Groups, refusal);
            return Ok(false);
        }
        let Some(listing) = listings.iter().find(|l| l.resource == Resource::Groups) else {
            return Ok(true);
        };
        warn_refused(&work.refused);
        let tx = env.store.transaction()?;
        for group in &work.refused {
            tx.mark_links_seen(group, listing.state.generation)?;
            tx.set_group_progress(group, None)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Resumes `resource`'s snapshot, or starts one from `link`, the link "from now".
    fn open_listing(
        &mut self,
        env: &Env<'_>,
        resource: Resource,
        query: &str,
        resumed: Option<SnapshotState>,
        link: Option<Result<String, GraphError>>,
    ) -> Result<Option<Listing>, StoreError> {
        if let Some(state) = resumed {
            log::info!("sync: {resource}: resuming the snapshot under way");
            let baseline = env.store.sync_state(resource)?.baseline;
            return Ok(Some(Listing {
                resource,
                state,
                baseline,
            }));
        }
        // The link comes first: changes made while the listing runs are then in the
        // catch-up round (3.11: taken after the listing, they would be lost).
        let catchup_link = match link.unwrap_or(Err(GraphError::Stopped)) {
            Ok(link) => link,
            Err(error) => {
                self.fail(resource, error);
                return Ok(None);
            }
        };
        let chains = chain_names(resource);
        let names: Vec<&str> = chains.iter().map(String::as_str).collect();
        let tx = env.store.transaction()?;
        let state = tx.begin_snapshot(resource, &catchup_link, query, &names, &store::now())?;
        tx.commit()?;
        log::info!(
            "sync: {resource}: snapshot started ({} listing chain{}{})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if state.baseline { ", first import" } else { "" }
        );
        Ok(Some(Listing {
            resource,
            state: SnapshotState {
                catchup_link,
                query: query.to_owned(),
                generation: state.generation,
            },
            baseline: state.baseline,
        }))
    }

    /// Fetches and applies until nothing is left, a request fails or the pass stops.
    /// Answers are applied into an open transaction that commits when no further answer
    /// came while it may wait (`Batch::linger`), or after `MAX_BATCH_PAGES` /
    /// `MAX_BATCH_TIME` when the writer falls behind: a first import then rewrites each
    /// index page in the WAL once per batch, not once per answer. Each answer's progress
    /// commits with it, so a crash still resumes after the last commit.
    fn list(
        &mut self,
        env: &Env<'_>,
        listings: &[Listing],
        work: &mut Work,
    ) -> Result<(), StoreError> {
        let mut pool = self.pool(env)?;
        let mut batch: Option<Batch<'_>> = None;
        let mut waiting: Option<Answer> = None;
        loop {
            if !work.failed {
                dispatch(env, &mut pool, work);
            }
            let answer = match waiting
                .take()
                .or_else(|| lingering_answer(env, &mut pool, batch.as_ref()))
            {
                Some(answer) => answer,
                None => {
                    self.commit(&mut batch)?;
                    match self.next_answer(env, &mut pool) {
                        Some(answer) => answer,
                        None => return Ok(()),
                    }
                }
            };
            let open = match &mut batch {
                Some(open) => open,
                None => batch.insert(Batch::open(env.store)?),
            };
            match answer {
                Answer::List {
                    resource,
                    chain,
                    page,
                } => {
                    if let Some(listing) = listings.iter().find(|l| l.resource == resource) {
                        self.absorb_list(open, listing, work, chain, page)?;
                    }
                }
                Answer::Members { pages } => {
                    if let Some(listing) = listings.iter().find(|l| l.resource == Resource::Groups)
                    {
                        self.absorb_members(open, listing, work, pages)?;
                    }
                }
            }
            open.pages += 1;
            if open.pages >= MAX_BATCH_PAGES || open.started.elapsed() >= MAX_BATCH_TIME {
                self.commit(&mut batch)?;
            } else if !env.shutdown.is_requested() {
                // Another answer in this transaction; on a stop, the next turn commits.
                waiting = pool.try_receive();
            }
        }
    }

    /// Waits for the pool's next answer, beating the watchdog and watching the stop flag
    /// meanwhile. `None`: none will come (nothing in flight, the pass stops, or the workers
    /// ended).
    fn next_answer(&mut self, env: &Env<'_>, pool: &mut Pool) -> Option<Answer> {
        loop {
            if let Some(heartbeat) = env.heartbeat {
                heartbeat.beat();
            }
            if env.shutdown.is_requested() {
                self.stopped = true;
                return None;
            }
            if pool.in_flight == 0 {
                return None;
            }
            match pool.receive(STOP_POLL) {
                Ok(Some(answer)) => return Some(answer),
                Ok(None) => continue,
                Err(()) => return None,
            }
        }
    }

    fn pool(&self, env: &Env<'_>) -> Result<Pool, StoreError> {
        Pool::start(env.graph, env.config.sync.max_concurrency, env.shutdown).map_err(|e| {
            StoreError::Create {
                path: "snapshot worker thread".into(),
                source: e,
            }
        })
    }

    fn absorb_list(
        &mut self,
        open: &mut Batch<'_>,
        listing: &Listing,
        work: &mut Work,
        chain: String,
        page: Result<ListPage, GraphError>,
    ) -> Result<(), StoreError> {
        let resource = listing.resource;
        let key = (resource, chain);
        let Some(slot) = work.chains.get_mut(&key) else {
            return Ok(()); // a chain given up meanwhile (the partitions after a refusal)
        };
        slot.1 = false;
        let from_link = slot.0.is_some();
        let mut page = match page {
            Ok(page) => page,
            Err(error) if work.restarts(format!("{resource}/{}", key.1), from_link, &error) => {
                log::warn!(
                    "sync: {resource}: Graph no longer accepts the stored link of listing chain \
                     {} ({error}); listing that chain again from its start",
                    key.1
                );
                work.chains.insert(key, (None, false));
                return Ok(());
            }
            Err(error) if error.is_unsupported_query() && key.1 != ALL => {
                return self.unpartition(&open.tx, resource, work);
            }
            Err(error) => {
                work.failed = true;
                self.fail(resource, error);
                return Ok(());
            }
        };
        let (tx, now) = (&open.tx, store::now());
        let kind = Kind::of(resource);
        let lookup = tx.lookup(kind, &plan::wanted(&page.objects))?;
        let changes = plan::page(kind, &mut page.objects, lookup, listing.state.generation);
        apply_changes(
            tx,
            &changes,
            &stamp(self.run_id, listing, &now),
            &mut open.counts,
        )?;
        open.counts.pages += 1;
        tx.set_chain(resource, &key.1, page.next.as_deref())?;
        let groups: Vec<&str> = match resource {
            Resource::Groups => page.objects.iter().map(|o| o.id.as_str()).collect(),
            Resource::Users => Vec::new(),
        };
        tx.queue_groups(&groups, Purpose::Snapshot)?;
        for group in groups {
            work.queue(group, None);
        }
        match page.next {
            Some(next) => {
                work.chains.insert(key, (Some(next), false));
            }
            None => {
                work.chains.remove(&key);
            }
        }
        Ok(())
    }

    /// The service refused the partition filter (3.11): the resource is listed by one
    /// chain from its start instead. What the partitions applied stays (listing again is
    /// idempotent: it stamps what is unchanged as seen).
    fn unpartition(
        &mut self,
        tx: &Tx<'_>,
        resource: Resource,
        work: &mut Work,
    ) -> Result<(), StoreError> {
        log::warn!(
            "sync: {resource}: Graph refused the partition filter of the snapshot (HTTP 400); \
             listing {resource} in one chain instead"
        );
        tx.replace_chains(resource, &[ALL])?;
        work.chains.retain(|(r, _), _| *r != resource);
        work.chains
            .insert((resource, ALL.to_owned()), (None, false));
        Ok(())
    }

    fn absorb_members(
        &mut self,
        open: &mut Batch<'_>,
        listing: &Listing,
        work: &mut Work,
        pages: Vec<(String, Result<Option<MembersPage>, GraphError>)>,
    ) -> Result<(), StoreError> {
        let (tx, counts, now) = (&open.tx, &mut open.counts, store::now());
        let stamp = stamp(self.run_id, listing, &now);
        let mut continued = Vec::new();
        let mut continued_from_start = Vec::new();
        for (group, page) in pages {
            let from_link = work.continuing.remove(&group);
            match page {
                Ok(Some(page)) => {
                    work.members_read += 1;
                    let lookup =
                        tx.lookup(Kind::Group, &plan::wanted_members(&group, &page.members))?;
                    let changes =
                        plan::listed_members(&group, &page.members, lookup, stamp.generation);
                    apply_changes(tx, &changes, &stamp, counts)?;
                    counts.pages += 1;
                    tx.set_group_progress(&group, page.next.as_deref())?;
                    if let Some(next) = page.next {
                        continued.push((group, next));
                    }
                }
                Ok(None) if work.restarts_gone(&group, from_link) => {
                    // A 404 on a nextLink is also how Graph has answered a skiptoken it no
                    // longer honours (4.6): taken for a deletion, the rest of the list would
                    // never be read. From its first page, a deleted group answers 404 again.
                    warn_relisting_after_404(&group);
                    continued_from_start.push(group);
                }
                Ok(None) => {
                    // Deleted since it was listed: its links stay until the catch-up round
                    // says how (a soft deletion keeps them for a restore, 3.8).
                    tx.mark_links_seen(&group, stamp.generation)?;
                    tx.set_group_progress(&group, None)?;
                }
                Err(error @ GraphError::PermissionMissing { .. }) => {
                    // Not applied and not marked: settled once the listing is complete.
                    work.refused.push(group);
                    work.refusal.get_or_insert(error);
                }
                Err(error) if work.restarts(group.clone(), from_link, &error) => {
                    log::warn!(
                        "sync: groups: Graph no longer accepts the stored link of group {group}'s \
                         member list ({error}); reading its members again from the first page"
                    );
                    continued_from_start.push(group);
                }
                Err(error) => {
                    // Not applied and not marked: the group is read again on resume.
                    work.failed = true;
                    self.fail(Resource::Groups, error);
                }
            }
        }
        for (group, next) in continued {
            work.groups.push_back((group, Some(next)));
        }
        for group in continued_from_start {
            work.groups.push_back((group, None));
        }
        Ok(())
    }

    /// The listing is complete: what it did not see is gone (through the deletion guard),
    /// and each resource's catch-up link becomes its delta link. Users come first, so the
    /// links of users deleted meanwhile stay hidden, not removed.
    fn complete(
        &mut self,
        env: &Env<'_>,
        listings: &[Listing],
    ) -> Result<Vec<Resource>, StoreError> {
        let tx = env.store.transaction()?;
        let mut counts = Counts::default();
        let mut completed = Vec::new();
        let now = store::now();
        for listing in Resource::ALL
            .iter()
            .filter_map(|r| listings.iter().find(|l| l.resource == *r))
        {
            let resource = listing.resource;
            let kind = Kind::of(resource);
            let unseen = tx.unseen(kind, listing.state.generation)?;
            let (planned, recheck) = plan::reconcile_snapshot(kind, unseen);
            if !planned.is_empty() {
                log::info!(
                    "sync: reconciliation: {} {} changes for what the snapshot did not list",
                    planned.len(),
                    kind.entity()
                );
            }
            let (changes, held) = self.judge_kind(kind, planned, true);
            apply_changes(
                &tx,
                &changes,
                &stamp(self.run_id, listing, &now),
                &mut counts,
            )?;
            if held {
                log::warn!(
                    "sync: {resource} snapshot complete, but the deletion guard held its \
                     reconciliation: the snapshot stays, so the next pass reconciles again"
                );
                continue;
            }
            if listing.baseline && kind == Kind::Group {
                audit_baseline(&tx, self.run_id, &now)?;
            }
            let state = &listing.state;
            tx.complete_snapshot(resource, &state.catchup_link, &state.query, &now)?;
            if !recheck.is_empty() {
                log::info!(
                    "sync: {} groups have links the snapshot did not see; they are re-read \
                     after the catch-up round",
                    recheck.len()
                );
            }
            let recheck: Vec<&str> = recheck.iter().map(String::as_str).collect();
            tx.queue_groups(&recheck, Purpose::Recheck)?;
            log::info!("sync: {resource} snapshot complete (reconciled); catching up");
            completed.push(resource);
        }
        tx.commit()?;
        self.counts.add(&counts);
        Ok(completed)
    }

    /// Records a failed request: the pass fails with its message, and keeps its progress.
    fn fail(&mut self, resource: Resource, error: GraphError) {
        if matches!(error, GraphError::Stopped) {
            self.stopped = true;
            return;
        }
        log::debug!("sync: {resource} snapshot failed: {error}");
        self.failures.push(error.to_string());
        if !self.failed.contains(&resource) {
            self.failed.push(resource);
        }
    }
}

/// Sends what there is to send while the pool has room: chain pages first (they find the
/// groups), then member batches.
fn dispatch(env: &Env<'_>, pool: &mut Pool, work: &mut Work) {
    let endpoint = env.graph.endpoint();
    while !pool.is_full() {
        // The groups list first: the member reads it finds are most of the work.
        let idle_chain = work
            .chains
            .iter_mut()
            .filter(|(_, (_, busy))| !*busy)
            .min_by_key(|((resource, _), _)| *resource != Resource::Groups);
        if let Some(((resource, chain), (next, busy))) = idle_chain {
            *busy = true;
            let url = next
                .clone()
                .unwrap_or_else(|| start_url(endpoint, *resource, chain));
            pool.send(Task::List {
                resource: *resource,
                chain: chain.clone(),
                url,
            });
            continue;
        }
        match work.batch(endpoint, pool.in_flight == 0) {
            Some(groups) => pool.send(Task::Members { groups }),
            None => return,
        }
    }
}

/// The next answer, if one comes while the open `batch` may still wait for it
/// (`Batch::linger`).
fn lingering_answer(env: &Env<'_>, pool: &mut Pool, batch: Option<&Batch<'_>>) -> Option<Answer> {
    let wait = batch?.linger(pool.in_flight)?;
    if env.shutdown.is_requested() {
        return None;
    }
    pool.receive(wait).ok().flatten()
}

/// The deltaLink of a `$deltatoken=latest` round: where the catch-up starts.
fn latest_link(graph: &Graph, resource: Resource) -> Result<String, GraphError> {
    let mut url = resource.latest_url(graph.endpoint());
    for _ in 0..MAX_LATEST_PAGES {
        match graph.get_page(resource, &url)?.next {
            Next::Done(link) => return Ok(link),
            // Not expected (a "latest" round lists nothing), but followed: its objects are
            // the current state, which the listing reads anyway.
            Next::More(link) => url = link,
        }
    }
    Err(GraphError::UnusablePage {
        resource,
        detail: format!("a \"latest\" round without a deltaLink after {MAX_LATEST_PAGES} pages"),
    })
}

fn stamp<'a>(run: i64, listing: &Listing, now: &'a str) -> Stamp<'a> {
    Stamp {
        run,
        generation: listing.state.generation,
        now,
        baseline: listing.baseline,
    }
}
