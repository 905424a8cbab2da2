//! The write transaction and the domain's operations on objects, memberships, audit and links.

use super::*;

/// One write transaction, with the domain's operations. Dropping it rolls back.
pub struct Tx<'a> {
    pub(super) tx: rusqlite::Transaction<'a>,
    pub(super) path: PathBuf,
    /// The store's committed membership keys, and those this transaction gave out.
    pub(super) keys: &'a std::cell::RefCell<keys::KeyCache>,
    pub(super) fresh: keys::FreshKeys,
}

impl Tx<'_> {
    pub fn commit(self) -> Result<()> {
        let Tx {
            tx,
            path,
            keys,
            fresh,
        } = self;
        tx.commit().map_err(|e| sqlite_error(&path, e))?;
        keys.borrow_mut().commit(fresh);
        Ok(())
    }

    pub(super) fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite_error(&self.path, e)
    }

    /// Writes an object's merged attributes, clears any tombstone and stamps it as seen in
    /// `generation`. `created` tells insert from update.
    pub fn put_object(
        &self,
        kind: Kind,
        id: &str,
        attributes: &Props,
        created: bool,
        generation: i64,
        now: &str,
    ) -> Result<()> {
        let mut statement = self
            .tx
            .prepare_cached(kind.put_sql(created))
            .map_err(|e| self.err(e))?;
        let attributes_text = serde_json::to_string(attributes).unwrap_or_else(|_| "{}".to_owned());
        // Bound one by one, the strings borrowed: a first import writes 110,000 rows.
        let bind = |statement: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<usize> {
            statement.raw_bind_parameter(1, id)?;
            statement.raw_bind_parameter(2, &attributes_text)?;
            statement.raw_bind_parameter(3, generation)?;
            statement.raw_bind_parameter(4, now)?;
            for (i, (_, prop)) in kind.columns().iter().enumerate() {
                statement.raw_bind_parameter(i + 5, Column(attributes.get(prop)))?;
            }
            statement.raw_execute()
        };
        bind(&mut statement).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stamps an unchanged object as seen in this round's generation.
    pub fn mark_seen(&self, kind: Kind, id: &str, generation: i64) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET seen_generation = ?2 WHERE id = ?1",
            kind.table()
        );
        let mut statement = self.tx.prepare_cached(&sql).map_err(|e| self.err(e))?;
        statement
            .execute(params![id, generation])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn tombstone(&self, kind: Kind, id: &str, removal: Removal, now: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET deleted_at = coalesce(deleted_at, ?2), deletion = ?3, updated_at = ?2
             WHERE id = ?1",
            kind.table()
        );
        let mut statement = self.tx.prepare_cached(&sql).map_err(|e| self.err(e))?;
        statement
            .execute(params![id, now, removal.as_str()])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes a direct membership. True when there was one.
    pub fn remove_member(&self, group: &str, member: &str) -> Result<bool> {
        let mut statement = self
            .tx
            .prepare_cached(
                "DELETE FROM memberships
                 WHERE group_key = (SELECT key FROM object_keys WHERE id = ?1)
                   AND member_key = (SELECT key FROM object_keys WHERE id = ?2)",
            )
            .map_err(|e| self.err(e))?;
        Ok(statement
            .execute(params![group, member])
            .map_err(|e| self.err(e))?
            > 0)
    }

    pub fn audit(
        &self,
        run: i64,
        now: &str,
        entity: &str,
        entity_id: &str,
        action: &str,
        detail: Option<&Value>,
    ) -> Result<()> {
        let detail = detail.map(Value::to_string);
        self.audit_text(run, now, entity, entity_id, action, detail.as_deref())
    }

    /// [`Tx::audit`] with the detail already written as JSON text.
    pub fn audit_text(
        &self,
        run: i64,
        now: &str,
        entity: &str,
        entity_id: &str,
        action: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let mut statement = self
            .tx
            .prepare_cached(
                "INSERT INTO audit_events (run_id, at, entity, entity_id, action, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(|e| self.err(e))?;
        statement
            .execute(params![run, now, entity, entity_id, action, detail])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn sync_state(&self, resource: Resource) -> Result<SyncState> {
        read_sync_state(&self.tx, resource).map_err(|e| self.err(e))
    }

    /// Starts a full round: forgets both links and moves to a new generation. Returns the
    /// state it leaves: that generation, and whether the round is a baseline.
    pub fn start_full_round(
        &self,
        resource: Resource,
        query: &str,
        now: &str,
    ) -> Result<SyncState> {
        // A baseline starts with the first round into an empty table, and lasts until a
        // round of the resource completes: a first import restarted (410) or resumed after
        // a crash stays one, though its table is no longer empty.
        let sql = format!(
            "INSERT INTO sync_state (resource, query, generation, resume_full, updated_at, baseline)
             VALUES (?1, ?2, 1, 1, ?3, NOT EXISTS (SELECT 1 FROM {table}))
             ON CONFLICT (resource) DO UPDATE SET delta_link = NULL, delta_link_at = NULL,
                resume_link = NULL, resume_full = 1, query = ?2,
                generation = generation + 1, updated_at = ?3,
                baseline = baseline OR NOT EXISTS (SELECT 1 FROM {table})",
            table = Kind::of(resource).table()
        );
        self.tx
            .execute(&sql, params![resource.name(), query, now])
            .map_err(|e| self.err(e))?;
        // A new full round, by delta chain or snapshot, makes an earlier snapshot's
        // progress (and its catch-up link) meaningless.
        self.forget_snapshot(resource)?;
        self.sync_state(resource)
    }

    /// Records where to resume after a committed page.
    pub fn set_resume_link(
        &self,
        resource: Resource,
        link: &str,
        full: bool,
        now: &str,
    ) -> Result<()> {
        self.tx
            .execute(
                "UPDATE sync_state SET resume_link = ?2, resume_full = ?3, updated_at = ?4
                 WHERE resource = ?1",
                params![resource.name(), link, full, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Completes a round: the new delta link replaces the old one and the resume link goes.
    pub fn set_delta_link(
        &self,
        resource: Resource,
        link: &str,
        query: &str,
        now: &str,
    ) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO sync_state (resource, delta_link, delta_link_at, query, resume_link,
                    resume_full, generation, updated_at)
                 VALUES (?1, ?2, ?4, ?3, NULL, 0, 0, ?4)
                 ON CONFLICT (resource) DO UPDATE SET delta_link = ?2, delta_link_at = ?4,
                    query = ?3, resume_link = NULL, resume_full = 0, updated_at = ?4,
                    baseline = 0, catchup = 0",
                params![resource.name(), link, query, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.tx
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks the deletions and removals `run` audited as released by `approval` (the
    /// deletion guard's approval is audited on the events it let through).
    pub fn mark_approved(&self, run: i64, approval: &str) -> Result<()> {
        self.tx
            .execute(
                "UPDATE audit_events SET detail = json_set(coalesce(detail, '{}'), '$.approved', ?2)
                 WHERE run_id = ?1 AND (action = 'deleted' OR action = 'removed')",
                params![run, approval],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
