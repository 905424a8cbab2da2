//! Team queries: the mapped team is derived from `groups`, `group_members` and `users`.

use super::*;

impl Tx<'_> {
    /// (id, display_name, deleted) of every group whose id or display name is `entry`,
    /// ignoring case (`lower()` in SQLite folds ASCII only, so names are compared in Rust).
    pub fn groups_matching(&self, entry: &str) -> Result<Vec<(String, String, bool)>> {
        let wanted = entry.to_lowercase();
        let mut statement = self
            .tx
            .prepare_cached(
                "SELECT id, coalesce(display_name, ''), deleted_at IS NOT NULL FROM groups",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut found = Vec::new();
        for row in rows {
            let (id, name, deleted) = row.map_err(|e| self.err(e))?;
            if id.to_lowercase() == wanted || name.to_lowercase() == wanted {
                found.push((id, name, deleted));
            }
        }
        Ok(found)
    }

    /// Fills the temporary table `team_wanted` with the users who belong in the team: live,
    /// enabled unless `include_disabled`, and direct (or with `nested`, transitive) members
    /// of the live groups `group_ids`. `UNION` makes the recursion stop at groups already
    /// reached, so membership cycles terminate. Returns how many there are. The set stays in
    /// SQLite, so memory does not grow with the team. CROSS JOIN pins the join order: from
    /// the few reached groups to their members, never a scan of every membership.
    pub fn fill_team_wanted(
        &self,
        group_ids: &[String],
        nested: bool,
        include_disabled: bool,
    ) -> Result<u64> {
        self.tx
            .execute_batch(
                "DROP TABLE IF EXISTS temp.team_wanted;
                 CREATE TEMP TABLE team_wanted (user_id TEXT PRIMARY KEY) WITHOUT ROWID;",
            )
            .map_err(|e| self.err(e))?;
        let ids = Value::from(group_ids.to_vec()).to_string();
        let added = self
            .tx
            .execute(
                "INSERT OR IGNORE INTO temp.team_wanted (user_id)
                 WITH RECURSIVE reached(id) AS (
                     SELECT g.id FROM json_each(?1) j JOIN groups g ON g.id = j.value
                     WHERE g.deleted_at IS NULL
                     UNION
                     SELECT m.member_id FROM reached r
                     JOIN group_members m ON m.group_id = r.id AND m.member_type = 'group'
                     JOIN groups g ON g.id = m.member_id AND g.deleted_at IS NULL
                     WHERE ?2
                 )
                 SELECT u.id FROM reached r
                 CROSS JOIN group_members m ON m.group_id = r.id AND m.member_type = 'user'
                 CROSS JOIN users u ON u.id = m.member_id
                 WHERE u.deleted_at IS NULL AND (?3 OR u.account_enabled IS NOT 0)",
                params![ids, nested, include_disabled],
            )
            .map_err(|e| self.err(e))?;
        Ok(added as u64)
    }

    /// Removes, with an audit row each, the `team_members` rows not in `team_wanted`, and
    /// every row of another team name (left by a renamed team). Returns how many.
    pub fn remove_unwanted_team_members(&self, team: &str, run: i64, now: &str) -> Result<u64> {
        const UNWANTED: &str =
            "team <> :team OR user_id NOT IN (SELECT user_id FROM temp.team_wanted)";
        self.tx
            .execute(
                &format!(
                    "INSERT INTO audit_events (run_id, at, entity, entity_id, action, detail)
                     SELECT :run, :now, 'team', user_id, 'removed', json_object('team', team)
                     FROM team_members WHERE {UNWANTED}"
                ),
                named_params! { ":run": run, ":now": now, ":team": team },
            )
            .map_err(|e| self.err(e))?;
        let removed = self
            .tx
            .execute(
                &format!("DELETE FROM team_members WHERE {UNWANTED}"),
                named_params! { ":team": team },
            )
            .map_err(|e| self.err(e))?;
        Ok(removed as u64)
    }

    /// Adds, with an audit row each, the users of `team_wanted` not yet in the team, then
    /// drops `team_wanted`. Returns how many were added.
    pub fn add_wanted_team_members(&self, team: &str, run: i64, now: &str) -> Result<u64> {
        // Keep only the newcomers, so the two inserts below read them without a lookup.
        self.tx
            .execute(
                "DELETE FROM temp.team_wanted
                 WHERE user_id IN (SELECT user_id FROM team_members WHERE team = :team)",
                named_params! { ":team": team },
            )
            .map_err(|e| self.err(e))?;
        self.tx
            .execute(
                "INSERT INTO audit_events (run_id, at, entity, entity_id, action, detail)
                 SELECT :run, :now, 'team', user_id, 'added', json_object('team', :team)
                 FROM temp.team_wanted",
                named_params! { ":run": run, ":now": now, ":team": team },
            )
            .map_err(|e| self.err(e))?;
        let added = self
            .tx
            .execute(
                "INSERT INTO team_members (team, user_id, added_at)
                 SELECT :team, user_id, :now FROM temp.team_wanted",
                named_params! { ":now": now, ":team": team },
            )
            .map_err(|e| self.err(e))?;
        self.tx
            .execute_batch("DROP TABLE temp.team_wanted")
            .map_err(|e| self.err(e))?;
        Ok(added as u64)
    }
}
