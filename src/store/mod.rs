//! The SQLite database: schema, migrations and every statement. No HTTP here.
//!
//! The schema is a public interface (auditors query it with `sqlite3`), documented in
//! SCHEMA.md. Every write goes through a [`Tx`], which commits explicitly and rolls back when
//! dropped, so a crash or a stop never leaves half a page behind.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, named_params, params};
use serde_json::{Map, Value};

use crate::graph::{MemberType, Props, Removal, Resource};

/// The schema version this build writes; `PRAGMA user_version` holds the database's.
pub const SCHEMA_VERSION: i64 = 9;

/// Forward migrations: `MIGRATIONS[n]` takes a database from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path}: cannot create it: {source}; check the directory exists and is writable by this user"
    )]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {path}: schema version {found} is newer than this entra-sync understands \
         ({SCHEMA_VERSION}); upgrade entra-sync, or point sync.database at a new file"
    )]
    TooNew { path: String, found: i64 },
    #[error("database {path} does not exist yet; run `entra-sync sync` first")]
    Missing { path: String },
    #[error("database {path} {problem}; entra-sync refuses to use it: {fix}")]
    Unsafe {
        path: String,
        problem: String,
        fix: String,
    },
    #[error(
        "database {path} is damaged ({detail}); entra-sync stopped. To recover, stop entra-sync \
         (systemctl stop entra-sync), move the file aside with its -wal and -shm files (mv \
         {path} {path}.damaged) and start it again: the next pass is a full one and rebuilds \
         the data from Entra (the old file keeps the audit history for the auditors); or \
         restore a backup of the file"
    )]
    Corrupt { path: String, detail: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The two kinds of directory object we keep, with the typed columns that mirror some of
/// their properties (the rest live in `attributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn of(resource: Resource) -> Kind {
        match resource {
            Resource::Users => Kind::User,
            Resource::Groups => Kind::Group,
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
        }
    }

    /// The entity name in `audit_events`.
    pub fn entity(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }

    /// The statement `Tx::put_object` runs: the insert of a new row (`created`) or the
    /// update of a stored one, its typed columns bound from `?5` on. Written once per kind
    /// and reused: a first import runs it 110,000 times.
    fn put_sql(self, created: bool) -> &'static str {
        static SQL: [OnceLock<String>; 4] = [const { OnceLock::new() }; 4];
        SQL[self as usize * 2 + usize::from(created)].get_or_init(|| {
            let names = self.columns().iter().map(|(column, _)| *column);
            if created {
                let (names, places): (Vec<&str>, Vec<String>) = names
                    .enumerate()
                    .map(|(i, name)| (name, format!("?{}", i + 5)))
                    .unzip();
                format!(
                    "INSERT INTO {} (id, attributes, seen_generation, created_at, updated_at, {})
                     VALUES (?1, ?2, ?3, ?4, ?4, {})",
                    self.table(),
                    names.join(", "),
                    places.join(", ")
                )
            } else {
                let sets: Vec<String> = names
                    .enumerate()
                    .map(|(i, name)| format!("{name} = ?{}", i + 5))
                    .collect();
                format!(
                    "UPDATE {} SET attributes = ?2, seen_generation = ?3, updated_at = ?4,
                        deleted_at = NULL, deletion = NULL, {} WHERE id = ?1",
                    self.table(),
                    sets.join(", ")
                )
            }
        })
    }

    /// (column, Graph property) pairs copied out of the attributes.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::User => &[
                ("user_principal_name", "userPrincipalName"),
                ("display_name", "displayName"),
                ("mail", "mail"),
                ("account_enabled", "accountEnabled"),
                ("user_type", "userType"),
            ],
            Kind::Group => &[
                ("display_name", "displayName"),
                ("description", "description"),
                ("mail", "mail"),
                ("security_enabled", "securityEnabled"),
                ("group_types", "groupTypes"),
            ],
        }
    }
}

/// Per-resource delta state (`sync_state`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    pub delta_link: Option<String>,
    pub delta_link_at: Option<String>,
    /// What the links were made for: endpoint, tenant and `$select`. A different query
    /// means the links can't be reused.
    pub query: Option<String>,
    pub resume_link: Option<String>,
    /// Whether the round being resumed is a full one (its end reconciles).
    pub resume_full: bool,
    pub generation: i64,
    /// The resource's first full round into an empty table is under way: its memberships
    /// are audited as one row per group when it completes, not one per link.
    pub baseline: bool,
    /// The next incremental round is the catch-up after a snapshot: it records the groups
    /// it reports for a re-read (`snapshot_groups`, purpose 'recheck').
    pub catchup: bool,
}

/// The database handle. One writer at a time: the daemon (or `sync`) holds it.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    keys: std::cell::RefCell<keys::KeyCache>,
}

impl Store {
    /// Opens (creating it with mode 0600 if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store> {
        health::prepare_file(path)?;
        let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            keys: Default::default(),
        };
        store.configure().map_err(|e| store.err(e))?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database for reading only (`status`).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
            });
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| sqlite_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| sqlite_error(path, e))?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            keys: Default::default(),
        })
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets auditors read while a pass writes; NORMAL is durable at every commit
        // point in WAL mode except for power loss, when at most the last pages are redone.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // An 8 MiB page cache (SQLite's default is 2 MiB) keeps the hot index pages of a
        // first import in memory. 24 MiB bought no measurable speed once a snapshot commits
        // in batches, and cost 16 MiB of peak RSS at 100,000 users (68 MiB against 52).
        self.conn.pragma_update(None, "cache_size", -8 * 1024)?;
        // Checkpoint every ~64 MiB of WAL instead of every 4 MiB (fewer fsyncs on a large
        // import), and cut the WAL file back to that size afterwards.
        self.conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
        self.conn
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        self.conn.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found: version,
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self
                .conn
                .transaction()
                .map_err(|e| sqlite_error(&self.path, e))?;
            tx.execute_batch(sql)
                .map_err(|e| sqlite_error(&self.path, e))?;
            tx.pragma_update(None, "user_version", from as i64 + 1)
                .map_err(|e| sqlite_error(&self.path, e))?;
            tx.commit().map_err(|e| sqlite_error(&self.path, e))?;
            log::info!(
                "store: migrated {} to schema version {}",
                self.path.display(),
                from + 1
            );
        }
        Ok(())
    }

    pub fn err(&self, e: rusqlite::Error) -> StoreError {
        sqlite_error(&self.path, e)
    }

    /// Starts a write transaction. Takes `&self` so the sync writer can keep one open
    /// across loop iterations; one is open at a time (SQLite refuses a nested BEGIN).
    pub fn transaction(&self) -> Result<Tx<'_>> {
        let path = self.path.clone();
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|e| sqlite_error(&path, e))?;
        Ok(Tx {
            tx,
            path,
            keys: &self.keys,
            fresh: Default::default(),
        })
    }

    pub fn sync_state(&self, resource: Resource) -> Result<SyncState> {
        read_sync_state(&self.conn, resource).map_err(|e| self.err(e))
    }

    /// Opens a `sync_runs` row and returns its id.
    pub fn begin_run(&mut self, kind: &str, now: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO sync_runs (started_at, kind, status) VALUES (?1, ?2, 'running')",
                params![now, kind],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&mut self, run: &RunEnd) -> Result<()> {
        let c = &run.counts;
        self.conn
            .execute(
                "UPDATE sync_runs SET finished_at = ?2, kind = ?3, status = ?4, error = ?5,
                    users_created = ?6, users_updated = ?7, users_deleted = ?8, users_restored = ?9,
                    groups_created = ?10, groups_updated = ?11, groups_deleted = ?12,
                    groups_restored = ?13, members_added = ?14, members_removed = ?15,
                    team_added = ?16, team_removed = ?17, pages = ?18
                 WHERE id = ?1",
                params![
                    run.id,
                    run.finished_at,
                    run.kind,
                    run.status,
                    run.error,
                    c.users_created,
                    c.users_updated,
                    c.users_deleted,
                    c.users_restored,
                    c.groups_created,
                    c.groups_updated,
                    c.groups_deleted,
                    c.groups_restored,
                    c.members_added,
                    c.members_removed,
                    c.team_added,
                    c.team_removed,
                    c.pages,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks runs left `running` by a process that died as `interrupted`.
    pub fn close_abandoned_runs(&mut self, now: &str) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE sync_runs SET status = 'interrupted', finished_at = ?1,
                    error = coalesce(error, 'the process ended before the pass finished')
                 WHERE status = 'running'",
                params![now],
            )
            .map_err(|e| self.err(e))
    }

    /// When the last successful full pass finished.
    pub fn last_full_pass_at(&self) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT max(finished_at) FROM sync_runs WHERE kind = 'full' AND status = 'succeeded'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Caps the file at `pages` database pages, so a test can fill the disk.
    #[cfg(test)]
    pub fn limit_pages_for_test(&self, pages: u32) {
        let _ = self.conn.pragma_update(None, "max_page_count", pages);
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let tx = self.transaction()?;
        tx.set_meta(key, value)?;
        tx.commit()
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// How a pass ended, for its `sync_runs` row.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub id: i64,
    pub finished_at: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub error: Option<String>,
    pub counts: Counts,
}

/// What a pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub users_created: u64,
    pub users_updated: u64,
    pub users_deleted: u64,
    pub users_restored: u64,
    pub groups_created: u64,
    pub groups_updated: u64,
    pub groups_deleted: u64,
    pub groups_restored: u64,
    pub members_added: u64,
    pub members_removed: u64,
    pub team_added: u64,
    pub team_removed: u64,
    pub pages: u64,
}

impl Counts {
    /// Adds what another batch of changes did.
    pub fn add(&mut self, other: &Counts) {
        self.users_created += other.users_created;
        self.users_updated += other.users_updated;
        self.users_deleted += other.users_deleted;
        self.users_restored += other.users_restored;
        self.groups_created += other.groups_created;
        self.groups_updated += other.groups_updated;
        self.groups_deleted += other.groups_deleted;
        self.groups_restored += other.groups_restored;
        self.members_added += other.members_added;
        self.members_removed += other.members_removed;
        self.team_added += other.team_added;
        self.team_removed += other.team_removed;
        self.pages += other.pages;
    }

    /// True when users' state or memberships changed, so the team may have changed.
    pub fn touches_team(&self) -> bool {
        self.team_inputs() > 0
    }

    /// Changes to users, groups and memberships so far: what the team is computed from.
    pub fn team_inputs(&self) -> u64 {
        self.users_created
            + self.users_updated
            + self.users_deleted
            + self.users_restored
            + self.groups_created
            + self.groups_updated
            + self.groups_deleted
            + self.groups_restored
            + self.members_added
            + self.members_removed
    }
}

mod changes;
mod explain;
mod health;
mod history;
mod keys;
mod metrics;
mod progress;
mod snapshot;
mod status;
mod team;
mod tx;
pub use changes::{Change, Known, KnownLink, Lookup, Reason, Stamp, Unseen, Wanted};
pub use explain::{AuditRow, UserRow};
pub use health::{Checkpoint, create_state_directory, mebibytes, wal_bytes};
pub use history::{TEAM_AT_SQL, TEAM_CHANGES_SQL, TeamChange, TeamMember};
pub use metrics::PassRecord;
pub use progress::{Chain, Purpose, SnapshotState, StoredLink};
pub use snapshot::Event;
pub use status::{Contents, Run};
pub use team::{GroupRef, MappingView, Pin};
pub use tx::Tx;

fn read_sync_state(conn: &Connection, resource: Resource) -> rusqlite::Result<SyncState> {
    conn.query_row(
        "SELECT delta_link, delta_link_at, query, resume_link, resume_full, generation, baseline,
                catchup
         FROM sync_state WHERE resource = ?1",
        [resource.name()],
        |r| {
            Ok(SyncState {
                delta_link: r.get(0)?,
                delta_link_at: r.get(1)?,
                query: r.get(2)?,
                resume_link: r.get(3)?,
                resume_full: r.get(4)?,
                generation: r.get(5)?,
                baseline: r.get(6)?,
                catchup: r.get(7)?,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// A typed column's value, from the property it mirrors: booleans as 0/1, arrays and objects
/// as JSON text, absent or null as NULL. Strings are bound without a copy.
struct Column<'a>(Option<&'a Value>);

impl rusqlite::ToSql for Column<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
        Ok(match self.0 {
            None | Some(Value::Null) => ToSqlOutput::Owned(Sql::Null),
            Some(Value::Bool(b)) => ToSqlOutput::Owned(Sql::Integer(i64::from(*b))),
            Some(Value::String(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Some(Value::Number(n)) => ToSqlOutput::Owned(
                n.as_i64()
                    .map(Sql::Integer)
                    .or_else(|| n.as_f64().map(Sql::Real))
                    .unwrap_or(Sql::Null),
            ),
            Some(other) => ToSqlOutput::Owned(Sql::Text(other.to_string())),
        })
    }
}

/// The current time as the database writes it: RFC 3339, UTC, whole seconds.
pub fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

pub fn timestamp(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    let error = StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    if error.is_corruption() {
        // The message says how to recover; SQLite's own words stay as the detail.
        let StoreError::Sqlite { source, .. } = &error else {
            return error;
        };
        return StoreError::Corrupt {
            path: path.display().to_string(),
            detail: source.to_string(),
        };
    }
    error
}

#[cfg(test)]
mod tests;
