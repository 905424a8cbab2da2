//! `sync --dry-run`: what a pass would change, with nothing written to the database.
//!
//! The pass runs for real, with the same planner, guard and team rules, against a private
//! snapshot of the database (`VACUUM INTO`, a read: no write lock, so it works while the
//! service runs), and the snapshot's audit of that pass is what gets printed. The snapshot
//! is deleted afterwards; the database, its audit, `sync_runs` and its links stay as they
//! were. Memory stays that of a pass: events are printed as they are read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Config;
use crate::graph::Graph;
use crate::shutdown::Shutdown;
use crate::store::{Event, Store, StoreError};

use super::{PassOptions, PassReport, SyncError, run_pass, summary};

/// Lines printed per kind of change (entity and action) before "... and N more".
const PER_KIND: u64 = 100;

/// Runs a dry pass and prints its plan to `out`: the summary line, then one line per change
/// (or one JSON object per line with `json`). A held deletion is part of the plan, not a
/// failure; a failed fetch is an error.
pub fn dry_run(
    config: &Config,
    graph: &Graph,
    options: PassOptions,
    json: bool,
    shutdown: &Shutdown,
    out: &mut dyn Write,
) -> Result<(), SyncError> {
    let snapshot = Snapshot::take(&config.sync.database)?;
    let mut store = Store::open(&snapshot.path)?;
    let (report, held) = match run_pass(config, &mut store, graph, options, shutdown) {
        Ok(report) => (report, None),
        Err(SyncError::Held { message, report }) => (*report, Some(message)),
        Err(other) => return Err(other),
    };
    print(&store, &report, held.as_deref(), json, out).map_err(|e| StoreError::Create {
        path: "standard output".into(),
        source: e,
    })?;
    Ok(())
}

fn print(
    store: &Store,
    report: &PassReport,
    held: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if !json {
        writeln!(
            out,
            "dry run ({}), nothing written: {}",
            report.kind,
            summary(&report.counts)
        )?;
    }
    let mut per_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut written: std::io::Result<()> = Ok(());
    let read = store.for_each_event(report.run_id, |event| {
        if written.is_err() {
            return;
        }
        let seen = per_kind
            .entry((event.entity.clone(), event.action.clone()))
            .or_default();
        *seen += 1;
        written = if json {
            writeln!(out, "{}", as_json(&event))
        } else if *seen <= PER_KIND {
            writeln!(out, "{}", as_line(&event))
        } else {
            Ok(())
        };
    });
    written?;
    read.map_err(std::io::Error::other)?;
    if json {
        if let Some(message) = held {
            writeln!(out, "{}", json!({ "held": message }))?;
        }
        return Ok(());
    }
    for ((entity, action), n) in per_kind {
        if n > PER_KIND {
            writeln!(out, "... and {} more {entity} {action}", n - PER_KIND)?;
        }
    }
    if let Some(message) = held {
        writeln!(out, "{message}")?;
    }
    Ok(())
}

/// `user updated <id> "Ada" displayName: "Ada" -> "Ada B"`.
fn as_line(event: &Event) -> String {
    let mut line = format!("{} {} {}", event.entity, event.action, event.entity_id);
    if let Some(name) = &event.name {
        line.push_str(&format!(" {name:?}"));
    }
    let detail = event.detail.as_ref();
    match (event.entity.as_str(), event.action.as_str()) {
        (_, "updated") => {
            for (property, change) in detail.and_then(Value::as_object).into_iter().flatten() {
                line.push_str(&format!(
                    " {property}: {} -> {}",
                    change.get("old").unwrap_or(&Value::Null),
                    change.get("new").unwrap_or(&Value::Null)
                ));
            }
        }
        (_, "deleted") => {
            if let Some(deletion) = detail.and_then(|d| d.get("deletion")) {
                line.push_str(&format!(" ({})", deletion.as_str().unwrap_or_default()));
            }
            if let Some(reason) = detail.and_then(|d| d.get("reason")) {
                line.push_str(&format!(": {}", reason.as_str().unwrap_or_default()));
            }
        }
        ("membership", _) if detail.and_then(|d| d.get("baseline")).is_some() => {
            let members = detail
                .and_then(|d| d.get("members"))
                .and_then(Value::as_u64);
            line.push_str(&format!(
                " ({} members, the first import's baseline)",
                members.unwrap_or_default()
            ));
        }
        ("membership", _) => {
            let group = detail.and_then(|d| d.get("group")).and_then(Value::as_str);
            let kind = detail.and_then(|d| d.get("type")).and_then(Value::as_str);
            line.push_str(&format!(
                " ({}) group {}",
                kind.unwrap_or("?"),
                group.unwrap_or("?")
            ));
        }
        ("team", _) => {
            if let Some(team) = detail.and_then(|d| d.get("team")).and_then(Value::as_str) {
                line.push_str(&format!(" team {team:?}"));
            }
        }
        _ => {}
    }
    line
}

fn as_json(event: &Event) -> Value {
    json!({
        "entity": event.entity,
        "action": event.action,
        "id": event.entity_id,
        "name": event.name,
        "detail": event.detail,
    })
}

/// The private copy a dry run works on, removed (with its WAL files) when dropped.
struct Snapshot {
    path: PathBuf,
}

impl Snapshot {
    /// Copies `database` beside itself (so it stays inside the private state directory), or
    /// starts from an empty database when there is none yet.
    fn take(database: &Path) -> Result<Snapshot, StoreError> {
        let name = database
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "entra-sync.db".into());
        let path = database.with_file_name(format!(".{name}.dry-run-{}", std::process::id()));
        let snapshot = Snapshot { path };
        snapshot.remove();
        if database.exists() {
            Store::open_read_only(database)?.snapshot_into(&snapshot.path)?;
        }
        Ok(snapshot)
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(file));
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.remove();
    }
}
