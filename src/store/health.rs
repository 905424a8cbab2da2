//! The database file's health: where and with which modes it is created, the checks of an
//! existing file before SQLite opens it, the WAL checkpoint after each pass, and the
//! integrity check that tells a corrupt file from a failing pass.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// At most this long a checkpoint waits for readers before it reports them (the default
/// busy timeout of 10 s would hold up the daemon after every pass).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(1);
/// How many problems `quick_check` lists in the message.
const QUICK_CHECK_ROWS: u32 = 5;

/// What a checkpoint achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// False when a reader's open transaction kept the WAL from being emptied.
    pub complete: bool,
    /// Size of the WAL file afterwards.
    pub wal_bytes: u64,
}

impl Checkpoint {
    /// The warning for the log when a reader kept the WAL from being emptied.
    pub fn held_warning(&self, database: &Path) -> Option<String> {
        (!self.complete).then(|| {
            format!(
                "store: another program holds a read transaction open on {}, so its write-ahead \
                 log cannot be emptied ({}); the log grows with every pass until that reader \
                 ends its transaction (a sqlite3 shell inside BEGIN, a long export): end it, \
                 or read from a copy (sqlite3 {} \".backup copy.db\")",
                database.display(),
                mebibytes(self.wal_bytes),
                database.display()
            )
        })
    }
}

/// `bytes` as MiB with one decimal, for messages.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Store {
    /// Copies the WAL into the database and truncates it to zero bytes (TRUNCATE), after each
    /// pass: otherwise a reader that holds a transaction across passes lets it grow without
    /// bound, since SQLite can only reuse the WAL once no reader needs its start.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let result = (|| {
            self.conn.busy_timeout(CHECKPOINT_WAIT)?;
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            self.conn.busy_timeout(Duration::from_secs(10))?;
            Ok(busy)
        })();
        let busy = result.map_err(|e| self.err(e))?;
        Ok(Checkpoint {
            complete: busy == 0,
            wal_bytes: wal_bytes(&self.path),
        })
    }

    /// [`Store::checkpoint`] at the end of a pass (`sync` and the daemon): warns when a
    /// reader keeps the WAL from being emptied, and when the checkpoint fails.
    pub fn checkpoint_after_pass(&self) -> Option<Checkpoint> {
        match self.checkpoint() {
            Ok(done) => {
                if let Some(warning) = done.held_warning(&self.path) {
                    log::warn!("{warning}");
                }
                Some(done)
            }
            Err(e) => {
                log::warn!("store: cannot checkpoint the write-ahead log: {e}");
                None
            }
        }
    }

    /// `PRAGMA quick_check`: a corrupt file is [`StoreError::Corrupt`], with what SQLite
    /// found and how to recover. Run at the daemon's start and after any corruption error.
    pub fn quick_check(&self) -> Result<()> {
        let problems = (|| {
            let mut statement = self
                .conn
                .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_ROWS})"))?;
            statement
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })();
        match problems {
            Ok(rows) if rows == ["ok"] => Ok(()),
            Ok(rows) => Err(corrupt(&self.path, &rows.join("; "))),
            // A corruption error becomes `Corrupt` there; anything else is no verdict.
            Err(e) => Err(sqlite_error(&self.path, e)),
        }
    }
}

impl StoreError {
    /// True when SQLite says the file is damaged or is no database at all.
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } => true,
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }
}

fn corrupt(path: &Path, detail: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        detail: detail.chars().take(500).collect(),
    }
}

/// Size of the database's WAL file (0 when there is none).
pub fn wal_bytes(database: &Path) -> u64 {
    std::fs::metadata(sidecar(database, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn sidecar(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the directory that holds the database (and its lock file), with mode 0700 for
/// every directory it creates: the tenant's directory is never readable by others, not even
/// for a moment. Whoever touches the state directory first calls this.
pub fn create_state_directory(database: &Path) -> std::io::Result<()> {
    match database.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent),
        _ => Ok(()),
    }
}

/// Before SQLite opens `path`: refuses a symbolic link at the path (SQLite would follow it
/// and create its target with the umask's mode), creates a missing file with mode 0600,
/// and checks the modes and owners of what exists: the directory, the file and its WAL and
/// shared-memory files. Writable by others or owned by another user is refused; readable
/// by others is a warning.
pub(super) fn prepare_file(path: &Path) -> Result<()> {
    create_state_directory(path).map_err(|source| StoreError::Create {
        path: path.display().to_string(),
        source,
    })?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_mode(dir, true)?;
    }
    for file in [
        path.to_owned(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&file)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(StoreError::Unsafe {
                    path: file.display().to_string(),
                    problem: format!(
                        "is a symbolic link (to {target}), which entra-sync does not follow"
                    ),
                    fix: "point sync.database at the real file, or remove the link and let \
                          entra-sync create the database"
                        .into(),
                });
            }
            Ok(_) => check_mode(&file, false)?,
            Err(_) => {}
        }
    }
    // O_EXCL: fails on anything that exists, a link included, so nothing is followed.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Refuses `path` if another user could change it (writable by group or others, a
/// directory without the sticky bit, or owned by a user other than root or us); warns
/// when a file is readable by others.
fn check_mode(path: &Path, is_dir: bool) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let me = nix::unistd::geteuid().as_raw();
    let shown = path.display().to_string();
    let writable = mode & 0o022 != 0 && !(is_dir && mode & 0o1000 != 0);
    if writable {
        return Err(StoreError::Unsafe {
            path: shown.clone(),
            problem: format!(
                "has mode {:04o}: another user could change the {}",
                mode & 0o777,
                if is_dir { "database in it" } else { "database" }
            ),
            fix: format!("chmod go-w {shown}"),
        });
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(StoreError::Unsafe {
            path: shown.clone(),
            problem: format!(
                "is owned by uid {}, not by the user entra-sync runs as (uid {me})",
                meta.uid()
            ),
            fix: format!("chown {me} {shown}, or run entra-sync as its owner"),
        });
    }
    if !is_dir && mode & 0o044 != 0 {
        log::warn!(
            "store: {shown} has mode {:04o}: other users can read the tenant's directory; \
             chmod 600 {shown}",
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_database_path_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("e.db");
        let target = dir.path().join("elsewhere.db");
        std::os::unix::fs::symlink(&target, &db).unwrap();
        let err = Store::open(&db).err().unwrap();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(!target.exists(), "the link was followed");
    }

    #[test]
    fn the_state_directory_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/b/e.db");
        Store::open(&db).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn files_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("e.db");
        drop(Store::open(&db).unwrap());
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Store::open(&db).err().unwrap().to_string();
        assert!(
            err.contains("mode 0666") && err.contains("chmod go-w"),
            "{err}"
        );
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(&db).err().unwrap().to_string();
        assert!(
            err.contains("another user could change the database in it"),
            "{err}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        Store::open(&db).unwrap();
    }

    #[test]
    fn checkpoint_empties_the_wal_unless_a_reader_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("e.db");
        let mut store = Store::open(&db).unwrap();
        store.set_meta("k", "v1").unwrap();
        assert!(wal_bytes(&db) > 0);
        let done = store.checkpoint().unwrap();
        assert_eq!(
            done,
            Checkpoint {
                complete: true,
                wal_bytes: 0
            }
        );

        let reader = Connection::open(&db).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM meta;")
            .unwrap();
        store.set_meta("k", "v2").unwrap();
        let held = store.checkpoint().unwrap();
        assert!(!held.complete && held.wal_bytes > 0, "{held:?}");
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(store.checkpoint().unwrap().wal_bytes, 0);
    }

    #[test]
    fn quick_check_reports_a_damaged_file_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("e.db");
        {
            let mut store = Store::open(&db).unwrap();
            let tx = store.transaction().unwrap();
            let links: Vec<Change> = (0..500)
                .map(|n| Change::AddMember {
                    group: "g".into(),
                    member: format!("member-{n:05}").into(),
                    member_type: "user".into(),
                })
                .collect();
            let stamp = Stamp {
                run: 0,
                generation: 1,
                now: "2026-01-01T00:00:00Z",
                baseline: true,
            };
            tx.apply(&links, &stamp).unwrap();
            tx.commit().unwrap();
            store.checkpoint().unwrap();
            store.quick_check().unwrap();
            store.set_meta("k", "v").unwrap();
        }
        damage(&db);
        let err = match Store::open(&db) {
            Ok(store) => store.quick_check().err().unwrap(),
            Err(e) => e,
        };
        assert!(err.is_corruption(), "{err}");
        let text = err.to_string();
        assert!(text.contains("damaged") && text.contains("move"), "{text}");
    }

    /// Overwrites the header of every b-tree page after the first with garbage.
    fn damage(db: &Path) {
        let mut bytes = std::fs::read(db).unwrap();
        for start in (4096..bytes.len()).step_by(4096) {
            bytes[start..start + 16].fill(0xA5);
        }
        std::fs::write(db, bytes).unwrap();
    }
}
