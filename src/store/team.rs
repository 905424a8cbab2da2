//! Team queries: the mapped team is derived from `groups`, `memberships` (only the
//! rows of live groups are reached) and `users`, and
//! the mapping's pins (`mapping_pins`).

use super::*;

/// A group as the mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
    pub deleted: bool,
}

/// A `mapping.groups` name pinned to the group it resolved to (`mapping_pins`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    /// The entry, lower-cased (entries compare ignoring case).
    pub entry: String,
    pub group_id: String,
    /// The group's display name when it was pinned.
    pub group_name: String,
    pub pinned_at: String,
}

/// What resolving a mapping needs from the database, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingView {
    /// Every group whose id is one of the ids asked for or pinned, or whose display name
    /// is one of the names asked for (ignoring case), deleted ones included.
    pub groups: Vec<GroupRef>,
    pub pins: Vec<Pin>,
    /// The groups have been read completely at least once (a delta link is stored): only
    /// then may a name be pinned, so a partly read tenant never pins a look-alike.
    pub complete: bool,
}

impl Store {
    /// The mapping's view of the database: see [`MappingView`]. `names` are lower-cased.
    pub fn mapping_view(&self, ids: &[String], names: &[String]) -> Result<MappingView> {
        read_mapping_view(&self.conn, ids, names).map_err(|e| self.err(e))
    }
}

impl Tx<'_> {
    pub fn mapping_view(&self, ids: &[String], names: &[String]) -> Result<MappingView> {
        read_mapping_view(&self.tx, ids, names).map_err(|e| self.err(e))
    }

    /// Makes `pins` the whole of `mapping_pins`: pins of entries gone from the mapping go.
    pub fn replace_pins(&self, pins: &[Pin]) -> Result<()> {
        self.tx
            .execute("DELETE FROM mapping_pins", [])
            .map_err(|e| self.err(e))?;
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO mapping_pins (entry, group_id, group_name, pinned_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(|e| self.err(e))?;
        for pin in pins {
            insert
                .execute(params![
                    pin.entry,
                    pin.group_id,
                    pin.group_name,
                    pin.pinned_at
                ])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
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
                 WITH RECURSIVE reached(key) AS (
                     SELECT k.key FROM json_each(?1) j
                     JOIN groups g ON g.id = j.value
                     JOIN object_keys k ON k.id = g.id
                     WHERE g.deleted_at IS NULL
                     UNION
                     SELECT l.member_key FROM reached r
                     JOIN memberships l INDEXED BY memberships_nested
                         ON l.group_key = r.key AND l.member_type = 'group'
                     JOIN object_keys k ON k.key = l.member_key
                     JOIN groups g ON g.id = k.id AND g.deleted_at IS NULL
                     WHERE ?2
                 )
                 SELECT u.id FROM reached r
                 CROSS JOIN memberships l ON l.group_key = r.key AND l.member_type = 'user'
                 CROSS JOIN object_keys k ON k.key = l.member_key
                 CROSS JOIN users u ON u.id = k.id
                 WHERE u.deleted_at IS NULL AND (?3 OR u.account_enabled IS NOT 0)",
                params![ids, nested, include_disabled],
            )
            .map_err(|e| self.err(e))?;
        Ok(added as u64)
    }

    /// How many `team_members` rows `remove_unwanted_team_members` would remove (the
    /// deletion guard judges them before they go).
    pub fn count_unwanted_team_members(&self, team: &str) -> Result<u64> {
        self.tx
            .query_row(
                "SELECT count(*) FROM team_members
                 WHERE team <> ?1 OR user_id NOT IN (SELECT user_id FROM temp.team_wanted)",
                [team],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
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

fn read_mapping_view(
    conn: &Connection,
    ids: &[String],
    names: &[String],
) -> rusqlite::Result<MappingView> {
    // A reader (`status`) may open a database not yet migrated to version 2: no pins then.
    let has_pins: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'mapping_pins'",
        [],
        |r| r.get(0),
    )?;
    let mut statement = conn.prepare_cached(match has_pins {
        true => "SELECT entry, group_id, group_name, pinned_at FROM mapping_pins ORDER BY entry",
        false => "SELECT '', '', '', '' WHERE 0",
    })?;
    let pins: Vec<Pin> = statement
        .query_map([], |r| {
            Ok(Pin {
                entry: r.get(0)?,
                group_id: r.get(1)?,
                group_name: r.get(2)?,
                pinned_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let group = |r: &rusqlite::Row<'_>| {
        Ok(GroupRef {
            id: r.get(0)?,
            name: r.get(1)?,
            deleted: r.get(2)?,
        })
    };
    let mut wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    wanted.extend(pins.iter().map(|p| p.group_id.as_str()));
    let mut groups: Vec<GroupRef> = conn
        .prepare_cached(
            "SELECT g.id, coalesce(g.display_name, ''), g.deleted_at IS NOT NULL
             FROM json_each(?1) j JOIN groups g ON g.id = j.value",
        )?
        .query_map([Value::from(wanted).to_string()], group)?
        .collect::<rusqlite::Result<_>>()?;
    if !names.is_empty() {
        // `lower()` in SQLite folds ASCII only, so names are compared in Rust; one scan of
        // id and name for all the names.
        let mut statement = conn.prepare_cached(
            "SELECT id, coalesce(display_name, ''), deleted_at IS NOT NULL FROM groups",
        )?;
        for row in statement.query_map([], group)? {
            let row = row?;
            if names.contains(&row.name.to_lowercase()) && !groups.contains(&row) {
                groups.push(row);
            }
        }
    }
    let complete = conn
        .query_row(
            "SELECT delta_link IS NOT NULL FROM sync_state WHERE resource = 'groups'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(false);
    Ok(MappingView {
        groups,
        pins,
        complete,
    })
}
