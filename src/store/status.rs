//! What `entra-sync status` reads: counts of what the database holds and the last passes.
//! Reads only; works on a read-only handle while a daemon writes.

use super::*;

/// How many rows of each kind the database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Contents {
    pub users: i64,
    pub users_deleted: i64,
    pub groups: i64,
    pub groups_deleted: i64,
    pub memberships: i64,
    pub team_members: i64,
}

/// One `sync_runs` row, its counts summed per entity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub kind: String,
    pub status: String,
    pub users_changed: i64,
    pub groups_changed: i64,
    pub memberships_changed: i64,
    pub team_changed: i64,
    pub error: Option<String>,
}

impl Store {
    /// What the database holds, `team`'s members included.
    pub fn contents(&self, team: &str) -> Result<Contents> {
        let count = |sql: &str| {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map_err(|e| self.err(e))
        };
        Ok(Contents {
            users: count("SELECT count(*) FROM users WHERE deleted_at IS NULL")?,
            users_deleted: count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")?,
            groups: count("SELECT count(*) FROM groups WHERE deleted_at IS NULL")?,
            groups_deleted: count("SELECT count(*) FROM groups WHERE deleted_at IS NOT NULL")?,
            memberships: count("SELECT count(*) FROM group_members")?,
            team_members: self
                .conn
                .query_row(
                    "SELECT count(*) FROM team_members WHERE team = ?1",
                    [team],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?,
        })
    }

    /// The last `limit` passes, newest first.
    pub fn recent_runs(&self, limit: u32) -> Result<Vec<Run>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, started_at, finished_at, kind, status,
                    users_created + users_updated + users_deleted + users_restored,
                    groups_created + groups_updated + groups_deleted + groups_restored,
                    members_added + members_removed, team_added + team_removed, error
                 FROM sync_runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map([limit], |r| {
                Ok(Run {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    kind: r.get(3)?,
                    status: r.get(4)?,
                    users_changed: r.get(5)?,
                    groups_changed: r.get(6)?,
                    memberships_changed: r.get(7)?,
                    team_changed: r.get(8)?,
                    error: r.get(9)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .map_err(|e| self.err(e))
    }

    /// The error of the last failed pass, while no later pass has succeeded: after a
    /// success it is history, not news.
    pub fn unresolved_error(&self) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT error FROM sync_runs WHERE status = 'failed'
                   AND id > coalesce((SELECT max(id) FROM sync_runs WHERE status = 'succeeded'), 0)
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_counts_runs_and_the_unresolved_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let tx = store.transaction().unwrap();
        let attrs = Props::new();
        tx.put_object(Kind::User, "u1", &attrs, true, 1, "t")
            .unwrap();
        tx.put_object(Kind::User, "u2", &attrs, true, 1, "t")
            .unwrap();
        tx.tombstone(Kind::User, "u2", Removal::Soft, "t").unwrap();
        tx.put_object(Kind::Group, "g1", &attrs, true, 1, "t")
            .unwrap();
        let link = Change::AddMember {
            group: "g1".into(),
            member: "u1".into(),
            member_type: "user".into(),
        };
        let stamp = Stamp {
            run: 0,
            generation: 1,
            now: "2026-01-01T00:00:00Z",
            baseline: true,
        };
        tx.apply(&[link], &stamp).unwrap();
        tx.commit().unwrap();
        let contents = store.contents("Team").unwrap();
        assert_eq!(
            contents,
            Contents {
                users: 1,
                users_deleted: 1,
                groups: 1,
                memberships: 1,
                ..Contents::default()
            }
        );
        assert_eq!(store.unresolved_error().unwrap(), None);
        for (status, error) in [("succeeded", None), ("failed", Some("boom"))] {
            let id = store.begin_run("incremental", "t").unwrap();
            store
                .finish_run(&RunEnd {
                    id,
                    finished_at: "t2".into(),
                    kind: "incremental",
                    status,
                    error: error.map(str::to_owned),
                    counts: Counts {
                        users_created: 2,
                        members_added: 1,
                        ..Counts::default()
                    },
                })
                .unwrap();
        }
        let runs = store.recent_runs(5).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].status.as_str(), runs[0].users_changed),
            ("failed", 2)
        );
        assert_eq!(runs[1].memberships_changed, 1);
        assert_eq!(store.unresolved_error().unwrap().as_deref(), Some("boom"));
        let id = store.begin_run("incremental", "t").unwrap();
        store
            .finish_run(&RunEnd {
                id,
                finished_at: "t3".into(),
                kind: "incremental",
                status: "succeeded",
                error: None,
                counts: Counts::default(),
            })
            .unwrap();
        assert_eq!(store.unresolved_error().unwrap(), None);
        assert_eq!(store.recent_runs(1).unwrap().len(), 1);
    }
}
