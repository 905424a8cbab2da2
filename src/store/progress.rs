//! The progress of a snapshot full pass (graph-protocol.md 3.11): the "sync from now" link
//! it catches up from, its listing chains and the groups whose members are still to be read
//! (`snapshot_state`, `snapshot_chains`, `snapshot_groups`). Every page of a snapshot
//! commits with its progress, so a killed snapshot resumes with what it had not finished.

use super::*;

/// A snapshot under way for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotState {
    /// The `$deltatoken=latest` deltaLink taken before the listing started.
    pub catchup_link: String,
    /// Endpoint, tenant and `$select` the snapshot belongs to (as `sync_state.query`).
    pub query: String,
    /// The full-round generation the listing stamps what it sees with.
    pub generation: i64,
}

/// A listing chain not yet at its end: a users partition (its filter), or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// Where it continues; `None`: at its start.
    pub next_link: Option<String>,
}

/// Why a group's direct members are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Listed by a snapshot: its members are stamped into the snapshot's generation.
    Snapshot,
    /// Reported by the catch-up round: re-read whole and made exact.
    Recheck,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Snapshot => "snapshot",
            Purpose::Recheck => "recheck",
        }
    }
}

/// A stored direct membership of one group, as a recheck compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    pub member: String,
    pub member_type: String,
    /// The member is a soft-deleted user: Graph hides it from member lists (3.11), and the
    /// link stays for its restore (3.8).
    pub hidden: bool,
}

impl Store {
    /// The snapshot under way for `resource`, if any.
    pub fn snapshot_state(&self, resource: Resource) -> Result<Option<SnapshotState>> {
        self.conn
            .query_row(
                "SELECT catchup_link, query, generation FROM snapshot_state WHERE resource = ?1",
                [resource.name()],
                |r| {
                    Ok(SnapshotState {
                        catchup_link: r.get(0)?,
                        query: r.get(1)?,
                        generation: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// `resource`'s listing chains not yet at their end.
    pub fn snapshot_chains(&self, resource: Resource) -> Result<Vec<Chain>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT chain, next_link FROM snapshot_chains
                 WHERE resource = ?1 AND done = 0 ORDER BY chain",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map([resource.name()], |r| {
                Ok(Chain {
                    name: r.get(0)?,
                    next_link: r.get(1)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Groups whose members are still to be read for `purpose`, with where each continues.
    pub fn snapshot_groups(&self, purpose: Purpose) -> Result<Vec<(String, Option<String>)>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT group_id, next_link FROM snapshot_groups
                 WHERE purpose = ?1 AND done = 0 ORDER BY group_id",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map([purpose.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

impl Tx<'_> {
    /// Starts `resource`'s snapshot: a full round (new generation, a baseline when the table
    /// is empty; a previous snapshot's progress goes) that catches up from `catchup_link`,
    /// listed by `chains` from their start.
    pub fn begin_snapshot(
        &self,
        resource: Resource,
        catchup_link: &str,
        query: &str,
        chains: &[&str],
        now: &str,
    ) -> Result<SyncState> {
        let state = self.start_full_round(resource, query, now)?;
        self.tx
            .execute(
                "INSERT INTO snapshot_state (resource, catchup_link, query, generation, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![resource.name(), catchup_link, query, state.generation, now],
            )
            .map_err(|e| self.err(e))?;
        self.replace_chains(resource, chains)?;
        Ok(state)
    }

    /// Replaces `resource`'s chains with `chains`, each at its start (one chain after the
    /// service refused the partition filter).
    pub fn replace_chains(&self, resource: Resource, chains: &[&str]) -> Result<()> {
        self.tx
            .execute(
                "DELETE FROM snapshot_chains WHERE resource = ?1",
                [resource.name()],
            )
            .map_err(|e| self.err(e))?;
        let mut statement = self
            .tx
            .prepare_cached("INSERT INTO snapshot_chains (resource, chain) VALUES (?1, ?2)")
            .map_err(|e| self.err(e))?;
        for chain in chains {
            statement
                .execute(params![resource.name(), chain])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records where a chain continues after a committed page; `None`: it is complete.
    pub fn set_chain(&self, resource: Resource, chain: &str, next: Option<&str>) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE snapshot_chains SET next_link = ?3, done = ?4
                 WHERE resource = ?1 AND chain = ?2",
            )
            .and_then(|mut s| s.execute(params![resource.name(), chain, next, next.is_none()]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Queues groups for a member read. A group already queued keeps its row.
    pub fn queue_groups(&self, groups: &[&str], purpose: Purpose) -> Result<()> {
        let mut statement = self
            .tx
            .prepare_cached(
                "INSERT INTO snapshot_groups (group_id, purpose) VALUES (?1, ?2)
                 ON CONFLICT (group_id) DO NOTHING",
            )
            .map_err(|e| self.err(e))?;
        for group in groups {
            statement
                .execute(params![group, purpose.as_str()])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Records where a group's member list continues after a committed page; `None`: read
    /// whole. A recheck's row goes once read (its changes commit with it).
    pub fn set_group_progress(&self, group: &str, next: Option<&str>) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE snapshot_groups SET next_link = ?2, done = ?3 WHERE group_id = ?1",
            )
            .and_then(|mut s| s.execute(params![group, next, next.is_none()]))
            .map_err(|e| self.err(e))?;
        self.tx
            .prepare_cached(
                "DELETE FROM snapshot_groups WHERE group_id = ?1 AND purpose = 'recheck' AND done",
            )
            .and_then(|mut s| s.execute([group]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ends `resource`'s snapshot: its link "from now" becomes the delta link the catch-up
    /// round starts from (that round records the groups it reports for a recheck), and the
    /// progress goes. The round counts as complete: the baseline, if any, ends here.
    pub fn complete_snapshot(
        &self,
        resource: Resource,
        catchup_link: &str,
        query: &str,
        now: &str,
    ) -> Result<()> {
        self.set_delta_link(resource, catchup_link, query, now)?;
        self.tx
            .execute(
                "UPDATE sync_state SET catchup = 1 WHERE resource = ?1",
                [resource.name()],
            )
            .map_err(|e| self.err(e))?;
        self.forget_snapshot(resource)
    }

    /// Drops `resource`'s snapshot progress (a new full round makes it meaningless).
    pub fn forget_snapshot(&self, resource: Resource) -> Result<()> {
        for sql in [
            "DELETE FROM snapshot_state WHERE resource = ?1",
            "DELETE FROM snapshot_chains WHERE resource = ?1",
        ] {
            self.tx
                .execute(sql, [resource.name()])
                .map_err(|e| self.err(e))?;
        }
        if resource == Resource::Groups {
            self.tx
                .execute("DELETE FROM snapshot_groups WHERE purpose = 'snapshot'", [])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Stamps every stored membership of `group` as seen in `generation`: a group deleted
    /// between its listing and its member read keeps its links until the catch-up says
    /// how it went (a soft deletion keeps them for its restore, 3.8).
    pub fn mark_links_seen(&self, group: &str, generation: i64) -> Result<()> {
        let Some(key) = self.key(group)? else {
            return Ok(());
        };
        self.tx
            .prepare_cached("UPDATE memberships SET seen_generation = ?2 WHERE group_key = ?1")
            .and_then(|mut s| s.execute(params![key, generation]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every stored direct membership of `group`.
    pub fn links_of(&self, group: &str) -> Result<Vec<StoredLink>> {
        let Some(key) = self.key(group)? else {
            return Ok(Vec::new());
        };
        self.tx
            .prepare_cached(
                "SELECT m.id, l.member_type,
                        EXISTS (SELECT 1 FROM users u WHERE u.id = m.id AND u.deletion = 'soft')
                 FROM memberships l JOIN object_keys m ON m.key = l.member_key
                 WHERE l.group_key = ?1",
            )
            .and_then(|mut s| {
                s.query_map([key], |r| {
                    Ok(StoredLink {
                        member: r.get(0)?,
                        member_type: r.get(1)?,
                        hidden: r.get(2)?,
                    })
                })
                .and_then(|rows| rows.collect())
            })
            .map_err(|e| self.err(e))
    }
}
