//! `entra-sync status`: what the database says about the last passes, its contents, the
//! delta links' age and the secret's expiry, as text or JSON. Reads only.

// The report is the command's output.
#![allow(clippy::print_stdout)]

use std::path::Path;

use serde::Serialize;

use crate::config::load_config;
use crate::daemon::{DaemonState, STATE_KEY};
use crate::exit::CliError;
use crate::graph::Resource;
use crate::lock;
use crate::store::{self, Contents, GroupRef, Run, Store, StoreError};
use crate::team;

#[derive(Debug, Serialize)]
pub struct Status {
    pub config: String,
    pub database: String,
    /// Size of the database's write-ahead log: near zero after each pass, unless a reader
    /// holds a transaction open (absent when there is no database yet).
    pub wal_bytes: Option<u64>,
    pub enabled: bool,
    /// Pid of the process holding the database (a running daemon or sync), if any.
    pub running_pid: Option<u32>,
    /// The credential kind in use: "client secret", "certificate", "managed identity" or
    /// "federated token".
    pub credential: &'static str,
    /// When the credential expires (a secret's configured date, a certificate's notAfter).
    pub secret_expires: Option<String>,
    pub secret_days_left: Option<i64>,
    pub team: String,
    /// How each mapping.groups entry resolves (and what is wrong with it).
    pub mapping: Vec<MappingEntry>,
    pub contents: Option<Contents>,
    pub resources: Vec<ResourceState>,
    pub last_error: Option<String>,
    /// What the running daemon last said it was doing (absent when none runs).
    pub daemon: Option<DaemonState>,
    pub runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
pub struct MappingEntry {
    pub entry: String,
    /// The live group whose members the entry brings in.
    pub group: Option<GroupRef>,
    /// The group a name entry is pinned to, and since when.
    pub pinned_to: Option<String>,
    pub pinned_at: Option<String>,
    /// Why the entry brings no members, and what to do.
    pub problem: Option<String>,
    /// Renames and look-alikes of a pinned group.
    pub notes: Vec<String>,
}

impl MappingEntry {
    fn of(r: &team::Resolved) -> MappingEntry {
        MappingEntry {
            entry: r.entry.clone(),
            group: match &r.outcome {
                team::Outcome::Group { group } => Some(group.clone()),
                _ => None,
            },
            pinned_to: r.pin.as_ref().map(|p| p.group_id.clone()),
            pinned_at: r.pin.as_ref().map(|p| p.pinned_at.clone()),
            problem: r.problem(),
            notes: r.notes(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ResourceState {
    pub resource: &'static str,
    pub delta_link_at: Option<String>,
    pub delta_link_age_seconds: Option<i64>,
    pub round_in_progress: bool,
}

pub fn show(config_path: &Path, json: bool) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let today = time::OffsetDateTime::now_utc();
    let mut status = Status {
        config: config.path.display().to_string(),
        database: config.sync.database.display().to_string(),
        wal_bytes: None,
        enabled: config.sync.enabled,
        running_pid: lock::holder(&config.sync.database),
        credential: config.entra.credential.kind(),
        secret_expires: config.credential_expires().map(|d| d.to_string()),
        secret_days_left: config.secret_days_left(today.date()),
        team: config.mapping.team.clone(),
        mapping: Vec::new(),
        contents: None,
        resources: Vec::new(),
        last_error: None,
        daemon: None,
        runs: Vec::new(),
    };
    if config.sync.database.exists() {
        let store = Store::open_read_only(&config.sync.database)?;
        status.wal_bytes = Some(store::wal_bytes(&config.sync.database));
        read(&store, &mut status, &config.mapping.team, today)?;
        status.mapping = team::describe(&store, &config.mapping)?
            .iter()
            .map(MappingEntry::of)
            .collect();
        let daemon = store
            .meta(STATE_KEY)
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str::<DaemonState>(&text).ok());
        // Only a live daemon's word counts; the state of one that is gone is history.
        status.daemon = daemon.filter(|d| Some(d.pid) == status.running_pid);
        if let Some(d) = &status.daemon {
            status.enabled = d.enabled;
        }
    }
    if json {
        let text =
            serde_json::to_string_pretty(&status).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print_text(&status);
    }
    Ok(())
}

fn read(
    store: &Store,
    status: &mut Status,
    team: &str,
    now: time::OffsetDateTime,
) -> Result<(), StoreError> {
    status.contents = Some(store.contents(team)?);
    for resource in Resource::ALL {
        let state = store.sync_state(resource).unwrap_or_default();
        let age = state
            .delta_link_at
            .as_deref()
            .and_then(|at| age_seconds(at, now));
        status.resources.push(ResourceState {
            resource: resource.name(),
            delta_link_at: state.delta_link_at,
            delta_link_age_seconds: age,
            round_in_progress: state.resume_link.is_some(),
        });
    }
    status.runs = store.recent_runs(5)?;
    status.last_error = store.unresolved_error()?;
    Ok(())
}

fn age_seconds(at: &str, now: time::OffsetDateTime) -> Option<i64> {
    let then =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some((now - then).whole_seconds())
}

fn human(seconds: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64)).to_string()
}

fn print_text(s: &Status) {
    println!("config:    {}", s.config);
    match s.wal_bytes {
        Some(wal) => println!(
            "database:  {} (write-ahead log {})",
            s.database,
            store::mebibytes(wal)
        ),
        None => println!("database:  {}", s.database),
    }
    println!(
        "sync:      {}{}",
        if s.enabled {
            "enabled"
        } else {
            "disabled (sync.enabled = false)"
        },
        match s.running_pid {
            Some(pid) => format!(", running (pid {pid})"),
            None => ", not running".to_owned(),
        }
    );
    if let Some(d) = &s.daemon {
        println!(
            "daemon:    {} (pid {}); last pass {}{}; next pass {}",
            d.state,
            d.pid,
            d.last_pass_status.as_deref().unwrap_or("none yet"),
            d.last_pass_at
                .as_deref()
                .map(|at| format!(" at {at}"))
                .unwrap_or_default(),
            d.next_pass_at.as_deref().unwrap_or("none (disabled)")
        );
        if let Some(error) = &d.config_error {
            println!("config error (the daemon runs on the previous configuration): {error}");
        }
    }
    let what = s.credential;
    match (&s.secret_expires, s.secret_days_left) {
        (Some(date), Some(days)) if days < 0 => println!("secret:    {what} EXPIRED on {date}"),
        (Some(date), Some(days)) => {
            println!("secret:    {what} expires {date} ({days} days left)")
        }
        _ if s.credential == "client secret" => {
            println!("secret:    {what}, expiry not configured (entra.client_secret_expires)")
        }
        _ => println!("secret:    {what}, nothing that expires"),
    }
    let Some(c) = &s.contents else {
        println!("no database yet: run `entra-sync sync`");
        return;
    };
    println!(
        "contents:  {} users ({} deleted), {} groups ({} deleted), {} memberships",
        c.users, c.users_deleted, c.groups, c.groups_deleted, c.memberships
    );
    println!("team:      \"{}\": {} members", s.team, c.team_members);
    for m in &s.mapping {
        match (&m.group, &m.pinned_at) {
            (Some(g), Some(at)) => println!(
                "mapping:   \"{}\" is \"{}\" ({}), pinned since {at}",
                m.entry, g.name, g.id
            ),
            (Some(g), None) => println!("mapping:   \"{}\" is \"{}\" ({})", m.entry, g.name, g.id),
            (None, _) => {}
        }
        for line in m.problem.iter().chain(&m.notes) {
            println!("mapping:   {line}");
        }
    }
    for r in &s.resources {
        let link = match (&r.delta_link_at, r.delta_link_age_seconds) {
            (Some(at), Some(age)) => format!("delta link from {at} ({} old)", human(age)),
            _ => "no delta link yet".to_owned(),
        };
        let progress = if r.round_in_progress {
            ", a round in progress"
        } else {
            ""
        };
        println!("{:<10} {link}{progress}", format!("{}:", r.resource));
    }
    if let Some(error) = &s.last_error {
        println!("last error: {error}");
    }
    println!("last passes:");
    for run in &s.runs {
        println!(
            "  #{} {} {} {} -> {}: users {}, groups {}, memberships {}, team {}{}",
            run.id,
            run.kind,
            run.status,
            run.started_at,
            run.finished_at.as_deref().unwrap_or("..."),
            run.users_changed,
            run.groups_changed,
            run.memberships_changed,
            run.team_changed,
            run.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
}
