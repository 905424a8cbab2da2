//! The team's history, read back from `audit_events`: who was in the team at a moment, and
//! who joined or left in a period and why. Reads only; SCHEMA.md quotes these statements
//! (a test keeps the two the same), so auditors can run them in their own tools.

use super::*;

/// The team at `:at`: per user, the latest team event up to then; a member if it is `added`,
/// joined at that event. Ordered by UPN.
pub const TEAM_AT_SQL: &str = "\
SELECT a.entity_id AS id, u.user_principal_name, u.display_name,
       a.at AS joined_at, json_extract(a.detail, '$.team') AS team
FROM (SELECT max(id) AS id FROM audit_events
      WHERE entity = 'team' AND at <= :at GROUP BY entity_id) AS latest
JOIN audit_events a ON a.id = latest.id
LEFT JOIN users u ON u.id = a.entity_id
WHERE a.action = 'added'
ORDER BY u.user_principal_name COLLATE NOCASE, a.entity_id;";

/// Joins and leaves from `:since` to `:until` (both inclusive), oldest first, each with the
/// reasons the same pass recorded for that user: its membership added or removed, the
/// account created, restored, enabled, disabled or deleted. A leave or join with none of
/// these in its pass came from the mapping (a `team` run is the daemon applying an edited
/// mapping) or from a change to a mapped group itself. The CROSS JOIN makes SQLite scan
/// the audit log once, probing the few changes, rather than once per change.
pub const TEAM_CHANGES_SQL: &str = "\
WITH changes AS MATERIALIZED (
  SELECT id, run_id, at, entity_id, action, json_extract(detail, '$.team') AS team
  FROM audit_events
  WHERE entity = 'team' AND at >= :since AND at <= :until
),
causes AS MATERIALIZED (
  SELECT t.id AS change_id,
    CASE
      WHEN c.entity = 'membership' AND c.action = t.action
        THEN 'membership ' || c.action || ' (' ||
             coalesce(g.display_name, json_extract(c.detail, '$.group')) || ')'
      WHEN t.action = 'removed' AND c.action = 'deleted'
        THEN 'account deleted (' || coalesce(json_extract(c.detail, '$.deletion'), 'soft') || ')'
      WHEN t.action = 'removed' AND c.action = 'updated'
           AND json_extract(c.detail, '$.accountEnabled.new') = 0 THEN 'account disabled'
      WHEN t.action = 'added' AND c.action = 'created' THEN 'new account'
      WHEN t.action = 'added' AND c.action = 'restored' THEN 'account restored'
      WHEN t.action = 'added' AND c.action = 'updated'
           AND json_extract(c.detail, '$.accountEnabled.new') = 1 THEN 'account enabled'
    END AS why
  FROM audit_events c
  CROSS JOIN changes t ON t.run_id = c.run_id AND t.entity_id = c.entity_id AND c.id < t.id
  LEFT JOIN groups g ON c.entity = 'membership' AND g.id = json_extract(c.detail, '$.group')
  WHERE c.entity = 'user' OR c.entity = 'membership'
),
reasons AS (
  SELECT change_id, group_concat(why, '; ') AS why FROM causes
  WHERE why IS NOT NULL GROUP BY change_id
)
SELECT t.at, CASE t.action WHEN 'added' THEN 'joined' ELSE 'left' END AS change,
       t.entity_id AS id, u.user_principal_name, u.display_name, t.team,
       coalesce(reasons.why,
                CASE WHEN r.kind = 'team' THEN 'mapping change'
                     ELSE 'mapping or mapped group change' END) AS reason
FROM changes t
LEFT JOIN reasons ON reasons.change_id = t.id
LEFT JOIN users u ON u.id = t.entity_id
LEFT JOIN sync_runs r ON r.id = t.run_id
ORDER BY t.id;";

/// The team now, from `team_members` (what the daemon maintains).
const TEAM_NOW_SQL: &str = "\
SELECT t.user_id, u.user_principal_name, u.display_name, t.added_at, t.team
FROM team_members t LEFT JOIN users u ON u.id = t.user_id
ORDER BY u.user_principal_name COLLATE NOCASE, t.user_id";

/// One member of the team, as it is or was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TeamMember {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub joined_at: String,
    pub team: Option<String>,
}

/// One join or leave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TeamChange {
    pub at: String,
    /// `joined` or `left`.
    pub change: String,
    pub id: String,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub team: Option<String>,
    pub reason: String,
}

impl Store {
    /// When the first pass started: the audit log's beginning. `None` before any pass.
    pub fn first_pass_at(&self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT min(started_at) FROM sync_runs", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    pub fn team_now(&self) -> Result<Vec<TeamMember>> {
        self.members(TEAM_NOW_SQL, named_params! {})
    }

    /// The team as it stood at `at` (a database timestamp).
    pub fn team_at(&self, at: &str) -> Result<Vec<TeamMember>> {
        self.members(TEAM_AT_SQL, named_params! { ":at": at })
    }

    pub fn team_changes(&self, since: &str, until: &str) -> Result<Vec<TeamChange>> {
        let mut statement = self
            .conn
            .prepare(TEAM_CHANGES_SQL)
            .map_err(|e| self.err(e))?;
        statement
            .query_map(named_params! { ":since": since, ":until": until }, |r| {
                Ok(TeamChange {
                    at: r.get(0)?,
                    change: r.get(1)?,
                    id: r.get(2)?,
                    user_principal_name: r.get(3)?,
                    display_name: r.get(4)?,
                    team: r.get(5)?,
                    reason: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    fn members(
        &self,
        sql: &str,
        params: &[(&str, &dyn rusqlite::ToSql)],
    ) -> Result<Vec<TeamMember>> {
        let mut statement = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        statement
            .query_map(params, |r| {
                Ok(TeamMember {
                    id: r.get(0)?,
                    user_principal_name: r.get(1)?,
                    display_name: r.get(2)?,
                    joined_at: r.get(3)?,
                    team: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SCHEMA.md promises auditors the same statements the command runs.
    #[test]
    fn schema_md_quotes_the_statements() {
        let schema = include_str!("../../SCHEMA.md");
        for sql in [TEAM_AT_SQL, TEAM_CHANGES_SQL] {
            assert!(
                schema.contains(&format!("```sql\n{sql}\n```")),
                "SCHEMA.md lacks:\n{sql}"
            );
        }
    }
}
