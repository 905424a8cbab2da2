//! The re-read after a snapshot's catch-up round: the groups it reported are read whole
//! again, and their links made exactly what Graph lists now (3.11 (b)).

use std::collections::{HashMap, HashSet, VecDeque};

use super::{BATCH_ITEMS, warn_refused, warn_relisting_after_404};
use crate::graph::{GraphError, MemberChange, MembersPage, Resource, members_url};
use crate::store::{self, Counts, Purpose, Stamp, StoreError};
use crate::sync::pool::{Answer, Task};
use crate::sync::{Env, Pass, apply_changes, plan};

impl Pass {
    /// Re-reads whole the groups the catch-up round reported (queued with its pages), and
    /// makes their links exactly what Graph lists now (3.11 (b)).
    ///
    /// It waits (the queue is kept) while the users are not reconciled: a member list
    /// leaves out soft-deleted users (3.11), whose links are kept only once the users'
    /// snapshot or round has marked them soft; read before, they would be dropped, and a
    /// restore never reports them again (3.8).
    pub(in crate::sync) fn recheck(&mut self, env: &Env<'_>) -> Result<(), StoreError> {
        if self.stopped || self.failed.contains(&Resource::Groups) {
            return Ok(());
        }
        let pending = env.store.snapshot_groups(Purpose::Recheck)?;
        if pending.is_empty() {
            return Ok(());
        }
        if self.failed.contains(&Resource::Users)
            || env.store.snapshot_state(Resource::Users)?.is_some()
        {
            log::warn!(
                "sync: the members of {} groups are re-read once the users are reconciled \
                 (their round failed or its deletions were held, as said above): the next \
                 pass does it",
                pending.len()
            );
            return Ok(());
        }
        log::info!(
            "sync: re-reading the members of {} groups the catch-up round reported",
            pending.len()
        );
        let generation = env.store.sync_state(Resource::Groups)?.generation;
        let endpoint = env.graph.endpoint();
        let mut queue: VecDeque<(String, String)> = pending
            .into_iter()
            .map(|(group, _)| {
                let url = members_url(endpoint, &group);
                (group, url)
            })
            .collect();
        let mut lists: HashMap<String, Vec<MemberChange>> = HashMap::new();
        // Groups whose list was read again from its first page after a 404 at a nextLink.
        let mut restarted = HashSet::new();
        let mut pool = self.pool(env)?;
        let mut failed = false;
        loop {
            while !failed && !pool.is_full() && !queue.is_empty() {
                let take = queue.len().min(BATCH_ITEMS);
                pool.send(Task::Members {
                    groups: queue.drain(..take).collect(),
                });
            }
            let Some(answer) = self.next_answer(env, &mut pool) else {
                return Ok(());
            };
            let Answer::Members { pages } = answer else {
                continue;
            };
            for (group, page) in pages {
                match page {
                    Ok(Some(MembersPage {
                        members,
                        next: Some(next),
                    })) => {
                        lists.entry(group.clone()).or_default().extend(members);
                        queue.push_back((group, next));
                    }
                    Ok(Some(MembersPage {
                        mut members,
                        next: None,
                    })) => {
                        let mut listed = lists.remove(&group).unwrap_or_default();
                        listed.append(&mut members);
                        self.apply_recheck(env, &group, &listed, generation)?;
                    }
                    Ok(None)
                        if lists.remove(&group).is_some() && restarted.insert(group.clone()) =>
                    {
                        // 404 at a nextLink: maybe a skiptoken Graph no longer honours (4.6),
                        // so the list is read again whole; a deleted group answers 404 again.
                        warn_relisting_after_404(&group);
                        let url = members_url(endpoint, &group);
                        queue.push_back((group, url));
                    }
                    Ok(None) => {
                        // Gone since the catch-up: its deletion comes in the next round.
                        let tx = env.store.transaction()?;
                        tx.set_group_progress(&group, None)?;
                        tx.commit()?;
                    }
                    Err(GraphError::PermissionMissing { .. }) => {
                        // Hidden membership (see `settle_refused`): its links stay as they are.
                        lists.remove(&group);
                        warn_refused(std::slice::from_ref(&group));
                        let tx = env.store.transaction()?;
                        tx.set_group_progress(&group, None)?;
                        tx.commit()?;
                    }
                    Err(error) => {
                        failed = true;
                        self.fail(Resource::Groups, error);
                    }
                }
            }
        }
    }

    fn apply_recheck(
        &mut self,
        env: &Env<'_>,
        group: &str,
        listed: &[MemberChange],
        generation: i64,
    ) -> Result<(), StoreError> {
        let tx = env.store.transaction()?;
        let changes = plan::recheck(group, listed, &tx.links_of(group)?);
        if !changes.is_empty() {
            log::info!(
                "sync: group {group}: {} membership changes after re-reading it",
                changes.len()
            );
        }
        let now = store::now();
        let stamp = Stamp {
            run: self.run_id,
            generation,
            now: &now,
            baseline: false,
        };
        let mut counts = Counts::default();
        apply_changes(&tx, &changes, &stamp, &mut counts)?;
        tx.set_group_progress(group, None)?;
        tx.commit()?;
        self.counts.add(&counts);
        Ok(())
    }
}
