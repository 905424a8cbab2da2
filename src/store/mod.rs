//! The SQLite database: schema, migrations and every statement. No HTTP here.
//!
//! The schema is a public interface (auditors query it with `sqlite3`), documented in
//! SCHEMA.md. Every write goes through a [`Tx`], which commits explicitly and rolls back when
//! dropped, so a crash or a stop never leaves half a page behind.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, named_params, params};
use serde_json::{Map, Value};

use crate::graph::{Removal, Resource};

/// The schema version this build writes; `PRAGMA user_version` holds the database's.
pub const SCHEMA_VERSION: i64 = 6;

/// Forward migrations: `MIGRATIONS[n]` takes a database from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
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
        // A 24 MiB page cache (SQLite's default is 2 MiB) keeps the membership indexes hot
        // during a first import; memory stays well under 64 MiB whatever the tenant size.
        self.conn.pragma_update(None, "cache_size", -24 * 1024)?;
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
mod snapshot;
mod status;
mod team;
mod tx;
pub use changes::{Change, Known, KnownLink, Lookup, Reason, Stamp, Unseen, Wanted};
pub use explain::{AuditRow, UserRow};
pub use health::{Checkpoint, create_state_directory, mebibytes, wal_bytes};
pub use history::{TEAM_AT_SQL, TEAM_CHANGES_SQL, TeamChange, TeamMember};
pub use metrics::PassRecord;
pub use snapshot::Event;
pub use status::{Contents, Run};
pub use team::{GroupRef, MappingView, Pin};
pub use tx::Tx;

fn read_sync_state(conn: &Connection, resource: Resource) -> rusqlite::Result<SyncState> {
    conn.query_row(
        "SELECT delta_link, delta_link_at, query, resume_link, resume_full, generation, baseline
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
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// A JSON property as an SQL value for the typed columns: booleans as 0/1, arrays and
/// objects as JSON text, absent or null as NULL.
fn sql_value(value: Option<&Value>) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        None | Some(Value::Null) => Sql::Null,
        Some(Value::Bool(b)) => Sql::Integer(i64::from(*b)),
        Some(Value::String(s)) => Sql::Text(s.clone()),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Sql::Integer)
            .or_else(|| n.as_f64().map(Sql::Real))
            .unwrap_or(Sql::Null),
        Some(other) => Sql::Text(other.to_string()),
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
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state/test.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn new_database_is_private_wal_and_current() {
        let (dir, store) = temp_store();
        let path = dir.path().join("state/test.db");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let journal: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(store);
        // Reopening migrates nothing and keeps the data.
        Store::open(&path).unwrap();
    }

    #[test]
    fn version_1_migrates_with_its_memberships_behind_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO groups (id, display_name, attributes, created_at, updated_at)
                     VALUES ('g1', 'Live', '{}', 't', 't');
                 INSERT INTO groups (id, display_name, attributes, created_at, updated_at,
                     deleted_at, deletion) VALUES ('g2', 'Gone', '{}', 't', 't', 't', 'soft');
                 INSERT INTO group_members (group_id, member_id, member_type, added_at)
                     VALUES ('g1', 'u1', 'user', 't'), ('g2', 'u1', 'user', 't');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            let mut statement = store.conn.prepare(sql).unwrap();
            statement
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(rows("SELECT group_id FROM group_members"), vec!["g1"]);
        assert_eq!(
            rows("SELECT group_id FROM group_members_all ORDER BY 1"),
            vec!["g1", "g2"]
        );
        assert_eq!(rows("SELECT entry FROM mapping_pins"), Vec::<String>::new());
    }

    #[test]
    fn explain_reads_work_on_an_empty_database() {
        let (_dir, store) = temp_store();
        // Fails to prepare if the partial index can't serve it (INDEXED BY).
        assert!(store.nested_groups("g").unwrap().is_empty());
        assert!(store.audit_trail("u", 10).unwrap().is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, store) = temp_store();
        store
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(store);
        let err = Store::open(&dir.path().join("state/test.db"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("newer than this entra-sync understands"),
            "{err}"
        );
    }

    /// A time for the rows that store it as Unix seconds.
    const T: &str = "2026-01-01T00:00:00Z";

    /// Applied as any round but a baseline: audited per row.
    fn per_row(run: i64, generation: i64, now: &str) -> Stamp<'_> {
        Stamp {
            run,
            generation,
            now,
            baseline: false,
        }
    }

    fn link(group: &str, member: &str) -> Change {
        Change::AddMember {
            group: group.into(),
            member: member.into(),
            member_type: "user".into(),
        }
    }

    #[test]
    fn objects_round_trip_with_typed_columns() {
        let (_dir, mut store) = temp_store();
        let run = store.begin_run("full", "t").unwrap();
        let tx = store.transaction().unwrap();
        let attrs: Map<String, Value> = serde_json::from_str(
            r#"{"displayName":"Ada","userPrincipalName":"ada@x","accountEnabled":false,"mail":null}"#,
        )
        .unwrap();
        let changes = [
            Change::Create {
                kind: Kind::User,
                id: "u1".into(),
                attributes: attrs.clone(),
            },
            Change::Delete {
                kind: Kind::User,
                id: "u1".into(),
                name: None,
                removal: Removal::Soft,
                reason: Reason::Removed,
                was_live: true,
            },
        ];
        tx.apply(&changes[..1], &per_row(run, 1, "2026-01-01T00:00:00Z"))
            .unwrap();
        tx.apply(&changes[1..], &per_row(run, 1, "2026-01-02T00:00:00Z"))
            .unwrap();
        let wanted = Wanted {
            objects: vec!["u1", "u2"],
            ..Wanted::default()
        };
        let found = tx.lookup(Kind::User, &wanted).unwrap();
        assert_eq!(found.objects.len(), 1);
        let stored = &found.objects["u1"];
        assert_eq!(stored.attributes, attrs);
        assert_eq!(stored.deletion, Some(Removal::Soft));
        assert_eq!(stored.seen_generation, 1);
        tx.commit().unwrap();
        let row: (String, i64, Option<String>, String) = store
            .conn
            .query_row(
                "SELECT user_principal_name, account_enabled, mail, deleted_at FROM users WHERE id='u1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("ada@x".into(), 0, None, "2026-01-02T00:00:00Z".into())
        );
        let audited: Vec<String> = store
            .conn
            .prepare("SELECT action || ' ' || coalesce(detail, '') FROM audit_events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(audited, ["created ", r#"deleted {"deletion":"soft"}"#]);
    }

    #[test]
    fn dropped_transaction_rolls_back() {
        let (_dir, mut store) = temp_store();
        let run = store.begin_run("full", "t").unwrap();
        {
            let tx = store.transaction().unwrap();
            tx.apply(&[link("g", "u")], &per_row(run, 1, T)).unwrap();
        }
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM group_members_all", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn memberships_are_looked_up_by_pair_and_unseen_by_generation() {
        let (_dir, mut store) = temp_store();
        let run = store.begin_run("full", "t").unwrap();
        let tx = store.transaction().unwrap();
        tx.apply(
            &[link("g", "u1"), link("g", "u2"), link("h", "u1")],
            &per_row(run, 1, T),
        )
        .unwrap();
        let stamp = Change::SeenMember {
            group: "g".into(),
            member: "u1".into(),
            member_type: "group".into(),
        };
        let group = |id: &str| Change::Create {
            kind: Kind::Group,
            id: id.into(),
            attributes: Map::new(),
        };
        tx.apply(&[group("g"), group("h"), stamp], &per_row(run, 2, T))
            .unwrap();
        let wanted = Wanted {
            objects: vec!["g"],
            links: vec![("g", vec!["u1", "u3"])],
            purged: vec!["u2"],
            ..Wanted::default()
        };
        let found = tx.lookup(Kind::Group, &wanted).unwrap();
        let pairs: Vec<_> = found.links.iter().collect();
        assert_eq!(
            pairs,
            [(
                &("g".to_owned(), "u1".to_owned()),
                &KnownLink {
                    member_type: "group".into(),
                    seen_generation: 2
                }
            )]
        );
        // A purge is looked up only for ids the store holds (u2 is no object here).
        assert!(found.purged_links.is_empty());
        // Nor are the memberships of a group the store does not hold (a first import's),
        // whatever rows name it.
        tx.apply(&[link("x", "u1")], &per_row(run, 2, T)).unwrap();
        let new_group = Wanted {
            objects: vec!["x"],
            links: vec![("x", vec!["u1"])],
            ..Wanted::default()
        };
        assert!(tx.lookup(Kind::Group, &new_group).unwrap().links.is_empty());
        let unseen = tx.unseen(Kind::Group, 2).unwrap();
        assert_eq!(
            unseen.links,
            [
                ("g".to_owned(), "u2".to_owned(), "user".to_owned()),
                ("h".to_owned(), "u1".to_owned(), "user".to_owned())
            ]
        );
        assert!(tx.remove_member("g", "u1").unwrap());
        assert!(!tx.remove_member("g", "u1").unwrap());
        tx.commit().unwrap();
    }

    #[test]
    fn a_baseline_audits_memberships_per_group_and_later_rounds_per_row() {
        let (_dir, mut store) = temp_store();
        let run = store.begin_run("full", "t").unwrap();
        let tx = store.transaction().unwrap();
        let state = tx.start_full_round(Resource::Groups, "q", "t").unwrap();
        assert!(state.baseline, "an empty groups table starts a baseline");
        let baseline = Stamp {
            baseline: true,
            ..per_row(run, state.generation, T)
        };
        let group = |id: &str| Change::Create {
            kind: Kind::Group,
            id: id.into(),
            attributes: Map::new(),
        };
        let gone = Change::RemoveMember {
            group: "g".into(),
            member: "u3".into(),
            member_type: "user".into(),
            reason: Reason::Removed,
        };
        let changes = [
            group("g"),
            group("h"),
            link("g", "u1"),
            link("g", "u2"),
            link("g", "u3"),
            gone,
            link("h", "u1"),
        ];
        tx.apply(&changes, &baseline).unwrap();
        assert_eq!(tx.audit_baseline(run, "t").unwrap(), 2);
        tx.set_delta_link(Resource::Groups, "delta", "q", "t")
            .unwrap();
        assert!(!tx.sync_state(Resource::Groups).unwrap().baseline);
        // A later full round (a lost delta state) is no baseline: the table holds groups.
        let state = tx.start_full_round(Resource::Groups, "q", "t").unwrap();
        assert!(!state.baseline);
        tx.apply(&[link("h", "u2")], &per_row(run, state.generation, T))
            .unwrap();
        tx.commit().unwrap();
        let audited: Vec<String> = store
            .conn
            .prepare(
                "SELECT entity || ' ' || entity_id || ' ' || action || ' ' || coalesce(detail, '')
                 FROM audit_events ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            audited,
            [
                "group g created ",
                "group h created ",
                r#"membership g added {"group":"g","members":2,"baseline":true}"#,
                r#"membership h added {"group":"h","members":1,"baseline":true}"#,
                r#"membership u2 added {"group":"h","type":"user"}"#,
            ]
        );
    }

    #[test]
    fn full_round_state_moves_generation_and_clears_links() {
        let (_dir, store) = temp_store();
        let tx = store.transaction().unwrap();
        let first = tx.start_full_round(Resource::Users, "q", "t").unwrap();
        assert_eq!((first.generation, first.baseline), (1, true));
        tx.set_resume_link(Resource::Users, "next", true, "t")
            .unwrap();
        tx.set_delta_link(Resource::Users, "delta", "q", "t2")
            .unwrap();
        let state = tx.sync_state(Resource::Users).unwrap();
        assert_eq!(state.delta_link.as_deref(), Some("delta"));
        assert_eq!(state.resume_link, None);
        // Still no user stored: a first import that did not finish goes on as a baseline.
        let again = tx.start_full_round(Resource::Users, "q", "t").unwrap();
        assert_eq!((again.generation, again.baseline), (2, true));
        assert_eq!(tx.sync_state(Resource::Users).unwrap().delta_link, None);
        tx.commit().unwrap();
    }
}
