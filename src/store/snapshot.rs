//! A private copy of the database for a dry run, and reading back what a pass audited.

use super::*;

/// One audit event of a pass, with the display name of the object it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub entity: String,
    pub entity_id: String,
    pub action: String,
    pub detail: Option<Value>,
    pub name: Option<String>,
}

impl Store {
    /// Writes one consistent snapshot of the database into `to`, a new file created with
    /// mode 0600. Reads only: works on a read-only handle, while another process writes.
    pub fn snapshot_into(&self, to: &Path) -> Result<()> {
        health::prepare_file(to)?;
        let target = to.to_string_lossy().into_owned();
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Calls `each` with every audit event of `run`, in order, one row at a time.
    pub fn for_each_event(&self, run: i64, mut each: impl FnMut(Event)) -> Result<()> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT e.entity, e.entity_id, e.action, e.detail,
                    CASE WHEN e.entity = 'group'
                        THEN (SELECT display_name FROM groups WHERE id = e.entity_id)
                        ELSE coalesce(
                            (SELECT coalesce(display_name, user_principal_name) FROM users
                             WHERE id = e.entity_id),
                            (SELECT display_name FROM groups WHERE id = e.entity_id))
                    END
                 FROM audit_events e WHERE e.run_id = ?1 ORDER BY e.id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = statement.query([run]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let read = || -> rusqlite::Result<Event> {
                let detail: Option<String> = row.get(3)?;
                Ok(Event {
                    entity: row.get(0)?,
                    entity_id: row.get(1)?,
                    action: row.get(2)?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    name: row.get(4)?,
                })
            };
            each(read().map_err(|e| self.err(e))?);
        }
        Ok(())
    }
}
