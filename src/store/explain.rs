//! What `entra-sync explain` reads: one user, the nesting below the mapped groups, the
//! user's direct memberships among them and the user's audit trail. Reads only; works on a
//! read-only handle while a daemon writes.

use super::*;
use crate::store::team::GroupRef;

/// A user as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    /// `None` when Graph never said.
    pub account_enabled: Option<bool>,
    pub user_type: Option<String>,
    pub deleted_at: Option<String>,
    /// `soft` or `permanent` for a deleted user.
    pub deletion: Option<String>,
}

/// One `audit_events` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub run_id: Option<i64>,
    pub at: String,
    pub entity: String,
    pub action: String,
    pub detail: Option<String>,
}

impl Store {
    /// Runs `f` in one read transaction, so every read in it sees the same database state
    /// even while a daemon commits pages.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN").map_err(|e| self.err(e))?;
        let result = f(self);
        // A read transaction has nothing to keep: ending it either way is the same.
        let _ = self.conn.execute_batch("ROLLBACK");
        result
    }

    /// Users whose object id, user principal name, mail or display name is `who`, ignoring
    /// case. Names are folded in Rust (`lower()` in SQLite folds ASCII only): one scan of
    /// four columns, tens of milliseconds at 100,000 users.
    pub fn users_matching(&self, who: &str) -> Result<Vec<UserRow>> {
        let wanted = who.trim().to_lowercase();
        let mut scan = self
            .conn
            .prepare_cached("SELECT id, user_principal_name, mail, display_name FROM users")
            .map_err(|e| self.err(e))?;
        let mut ids = Vec::new();
        let rows = scan
            .query_map([], |r| {
                Ok([
                    r.get::<_, Option<String>>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ])
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            if row
                .iter()
                .flatten()
                .any(|value| value.to_lowercase() == wanted)
                && let Some(id) = &row[0]
            {
                ids.push(id.clone());
            }
        }
        let mut users = Vec::with_capacity(ids.len());
        let mut one = self
            .conn
            .prepare_cached(
                "SELECT id, user_principal_name, display_name, mail, account_enabled, user_type,
                        deleted_at, deletion
                 FROM users WHERE id = ?1",
            )
            .map_err(|e| self.err(e))?;
        for id in ids {
            users.push(
                one.query_row([id], |r| {
                    Ok(UserRow {
                        id: r.get(0)?,
                        user_principal_name: r.get(1)?,
                        display_name: r.get(2)?,
                        mail: r.get(3)?,
                        account_enabled: r.get(4)?,
                        user_type: r.get(5)?,
                        deleted_at: r.get(6)?,
                        deletion: r.get(7)?,
                    })
                })
                .map_err(|e| self.err(e))?,
            );
        }
        users.sort_by(|a, b| a.user_principal_name.cmp(&b.user_principal_name));
        Ok(users)
    }

    /// The live groups that are direct members of `group` (the partial index
    /// `memberships_nested` makes this a lookup of a few rows, however many users the
    /// group holds).
    pub fn nested_groups(&self, group: &str) -> Result<Vec<GroupRef>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT g.id, coalesce(g.display_name, ''), 0
                 FROM memberships l INDEXED BY memberships_nested
                 JOIN object_keys m ON m.key = l.member_key
                 JOIN groups g ON g.id = m.id AND g.deleted_at IS NULL
                 WHERE l.group_key = (SELECT key FROM object_keys WHERE id = ?1)
                   AND l.member_type = 'group'
                 ORDER BY g.display_name, g.id",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map([group], |r| {
                Ok(GroupRef {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    deleted: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Which of `groups` hold `member` directly, whatever the group's state (the stored
    /// rows, hidden ones of soft-deleted groups included). One primary-key lookup each.
    pub fn groups_holding(&self, groups: &[String], member: &str) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM memberships
                 WHERE group_key = (SELECT key FROM object_keys WHERE id = ?1)
                   AND member_key = (SELECT key FROM object_keys WHERE id = ?2)",
            )
            .map_err(|e| self.err(e))?;
        let mut holding = Vec::new();
        for group in groups {
            if statement
                .exists(params![group, member])
                .map_err(|e| self.err(e))?
            {
                holding.push(group.clone());
            }
        }
        Ok(holding)
    }

    /// Whether `user` is in `team_members` under `team`.
    pub fn in_team(&self, team: &str, user: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM team_members WHERE team = ?1 AND user_id = ?2")
            .and_then(|mut s| s.exists(params![team, user]))
            .map_err(|e| self.err(e))
    }

    /// The last `limit` audit events about `id` (as the user, or as the member of a
    /// membership or team event), newest first. No index on `entity_id`: one backward scan
    /// (about 0.2 s at 1.1 million events), where an index doubled a first import's CPU.
    pub fn audit_trail(&self, id: &str, limit: u32) -> Result<Vec<AuditRow>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, run_id, at, entity, action, detail FROM audit_events
                 WHERE entity_id = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        statement
            .query_map(params![id, limit], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    at: r.get(2)?,
                    entity: r.get(3)?,
                    action: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}
