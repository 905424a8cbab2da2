//! `entra-sync status`: what the database says about the last passes, its contents, the
//! delta links' age and the secret's expiry, as text or JSON. Reads only.

// The report is the command's output.
#![allow(clippy::print_stdout)]

use std::path::Path;

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::cli::{CliError, load_config};
use crate::daemon::{DaemonState, STATE_KEY};
use crate::graph::Resource;
use crate::lock;
use crate::store::Store;

#[derive(Debug, Serialize)]
pub struct Status {
    pub config: String,
    pub database: String,
    pub enabled: bool,
    /// Pid of the process holding the database (a running daemon or sync), if any.
    pub running_pid: Option<u32>,
    pub secret_expires: Option<String>,
    pub secret_days_left: Option<i64>,
    pub team: String,
    pub contents: Option<Contents>,
    pub resources: Vec<ResourceState>,
    pub last_error: Option<String>,
    /// What the running daemon last said it was doing (absent when none runs).
    pub daemon: Option<DaemonState>,
    pub runs: Vec<Run>,
}

#[derive(Debug, Serialize, Default)]
pub struct Contents {
    pub users: i64,
    pub users_deleted: i64,
    pub groups: i64,
    pub groups_deleted: i64,
    pub memberships: i64,
    pub team_members: i64,
}

#[derive(Debug, Serialize)]
pub struct ResourceState {
    pub resource: &'static str,
    pub delta_link_at: Option<String>,
    pub delta_link_age_seconds: Option<i64>,
    pub round_in_progress: bool,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub kind: String,
    pub status: String,
    pub users_changed: i64,
    pub groups_changed: i64,
    pub memberships_changed: i64,
    pub team_changed: i64,
    pub error: Option<String>,
}

pub fn show(config_path: &Path, json: bool) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let today = time::OffsetDateTime::now_utc();
    let mut status = Status {
        config: config.path.display().to_string(),
        database: config.sync.database.display().to_string(),
        enabled: config.sync.enabled,
        running_pid: lock::holder(&config.sync.database),
        secret_expires: config.entra.client_secret_expires.map(|d| d.to_string()),
        secret_days_left: config.secret_days_left(today.date()),
        team: config.mapping.team.clone(),
        contents: None,
        resources: Vec::new(),
        last_error: None,
        daemon: None,
        runs: Vec::new(),
    };
    if config.sync.database.exists() {
        let store = Store::open_read_only(&config.sync.database)?;
        read(&store, &mut status, &config.mapping.team, today).map_err(|e| store.err(e))?;
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
) -> rusqlite::Result<()> {
    let conn = store.connection();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    status.contents = Some(Contents {
        users: count("SELECT count(*) FROM users WHERE deleted_at IS NULL")?,
        users_deleted: count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")?,
        groups: count("SELECT count(*) FROM groups WHERE deleted_at IS NULL")?,
        groups_deleted: count("SELECT count(*) FROM groups WHERE deleted_at IS NOT NULL")?,
        memberships: count("SELECT count(*) FROM group_members")?,
        team_members: conn.query_row(
            "SELECT count(*) FROM team_members WHERE team = ?1",
            [team],
            |r| r.get(0),
        )?,
    });
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
    let mut statement = conn.prepare(
        "SELECT id, started_at, finished_at, kind, status,
                users_created + users_updated + users_deleted + users_restored,
                groups_created + groups_updated + groups_deleted + groups_restored,
                members_added + members_removed, team_added + team_removed, error
         FROM sync_runs ORDER BY id DESC LIMIT 5",
    )?;
    status.runs = statement
        .query_map([], |r| {
            Ok(Run {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                kind: r.get(3)?,
                status: r.get(4)?,
                users_changed: r.get(5)?,
                groups_changed: r.get(6)?,
                memberships_changed: r.get(7)?,
                team_changed: r.get(8)?,
                error: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // The last error is only news while no later pass has succeeded.
    status.last_error = conn
        .query_row(
            "SELECT error FROM sync_runs WHERE status = 'failed'
               AND id > coalesce((SELECT max(id) FROM sync_runs WHERE status = 'succeeded'), 0)
             ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
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
    println!("database:  {}", s.database);
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
    match (&s.secret_expires, s.secret_days_left) {
        (Some(date), Some(days)) if days < 0 => println!("secret:    EXPIRED on {date}"),
        (Some(date), Some(days)) => println!("secret:    expires {date} ({days} days left)"),
        _ => println!("secret:    expiry not configured (entra.client_secret_expires)"),
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
