//! The commands: `sync`, `check`, `status`, `team`. Each is a thin wrapper over the library, and
//! `exit` maps their errors to exit codes.

// The commands' output is their product: printing to stdout is the point here.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth;
use crate::config::{Config, Credential, load_config};
use crate::exit::CliError;
use crate::graph::{Graph, Resource};
use crate::shutdown::Shutdown;
use crate::store::{self, Store};
use crate::sync::{self, PassOptions};
use crate::{history, lock, status, team};

#[derive(Debug, Parser)]
#[command(
    name = "entra-sync",
    version,
    about = "Keeps a local SQLite copy of a Microsoft Entra ID tenant's users, groups and memberships"
)]
pub struct Cli {
    /// Configuration file [default: $ENTRA_SYNC_CONFIG, else /etc/entra-sync/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one sync pass (incremental when possible), then exit
    Sync {
        /// Run full rounds and reconcile deletions, ignoring stored delta links
        #[arg(long)]
        full: bool,
        /// Fetch and plan a pass, print what it would change, write nothing (no lock needed)
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: print every change as one JSON object per line
        #[arg(long, requires = "dry_run")]
        json: bool,
        /// Apply every deletion this pass, whatever sync.max_deletions says
        #[arg(long)]
        allow_deletions: bool,
    },
    /// Let the next pass apply the deletions the deletion guard held (once); a running
    /// service starts that pass at once
    ApproveDeletions,
    /// Run as a service: sync now, then every sync.interval; follow edits of the config file
    Run,
    /// Check the configuration, sign-in, permissions and group mapping, one line per check
    Check,
    /// Show the last passes, what the database holds and the secret's expiry
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The mapped team now, as it stood at a moment, or who joined and left in a period,
    /// from the audit log (reads the database only; works while the service runs)
    Team {
        /// The team as it stood at WHEN: an RFC 3339 time, or a date (the end of that day, UTC)
        #[arg(long, value_name = "WHEN", conflicts_with_all = ["changes", "since", "until"])]
        at: Option<String>,
        /// List joins and leaves instead of members (needs --since)
        #[arg(long, requires = "since")]
        changes: bool,
        /// Start of the period (inclusive): an RFC 3339 time, or a date (its start, UTC)
        #[arg(long, value_name = "WHEN", requires = "changes")]
        since: Option<String>,
        /// End of the period (inclusive) [default: now]; a date means the end of that day
        #[arg(long, value_name = "WHEN", requires = "changes")]
        until: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: history::Format,
    },
    /// Say why a user is or is not in the team, from the database alone
    Explain {
        /// Object id, user principal name, mail or display name (ignoring case)
        who: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let path = Config::resolve_path(cli.config);
    match cli.command {
        Command::Sync {
            full,
            dry_run: true,
            json,
            allow_deletions,
        } => dry_run(&path, full, json, allow_deletions),
        Command::Sync {
            full,
            allow_deletions,
            ..
        } => sync_once(&path, full, allow_deletions),
        Command::ApproveDeletions => approve_deletions(&path),
        Command::Run => crate::daemon::run(&path),
        Command::Check => check(&path),
        Command::Status { json } => status::show(&path, json),
        Command::Team {
            at,
            changes,
            since,
            until,
            format,
        } => {
            let query = match (changes, since) {
                (true, Some(since)) => history::Query::Changes { since, until },
                _ => history::Query::Members { at },
            };
            history::show(&path, query, format)
        }
        Command::Explain { who, json } => crate::explain::show(&path, &who, json),
    }
}

/// `sync --dry-run`: the plan of a pass, printed; nothing written, no lock taken.
fn dry_run(path: &std::path::Path, full: bool, json: bool, allow: bool) -> Result<(), CliError> {
    let config = load_config(path)?;
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown);
    let graph = Graph::connect(&config, &shutdown);
    let options = PassOptions {
        full,
        heartbeat: None,
        allow_deletions: allow,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    sync::dry_run(&config, &graph, options, json, &shutdown, &mut out)?;
    Ok(())
}

/// `approve-deletions`: a one-shot approval in the database; a running service is told to
/// start a pass now.
fn approve_deletions(path: &std::path::Path) -> Result<(), CliError> {
    let config = load_config(path)?;
    let outcome = sync::approve_deletions(&config)?;
    println!("{outcome}");
    Ok(())
}

fn sync_once(path: &std::path::Path, full: bool, allow: bool) -> Result<(), CliError> {
    let config = load_config(path)?;
    if !config.sync.enabled {
        log::warn!(
            "sync: switched off by sync.enabled = false in {}; nothing done (set it to true to sync)",
            config.path.display()
        );
        return Ok(());
    }
    auth::log_secret_expiry(&config);
    let _lock = lock::acquire(&config.sync.database)?;
    let mut store = Store::open(&config.sync.database)?;
    store.close_abandoned_runs(&store::now())?;
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown);
    let graph = Graph::connect(&config, &shutdown);
    let options = PassOptions {
        full,
        heartbeat: None,
        allow_deletions: allow,
    };
    let result = sync::run_pass(&config, &mut store, &graph, options, &shutdown);
    store.checkpoint_after_pass();
    let report = match result {
        Err(sync::SyncError::Store(e)) if e.is_corruption() => {
            // quick_check says what is damaged; either way the message says how to recover.
            store.quick_check()?;
            return Err(e.into());
        }
        other => other?,
    };
    println!(
        "pass {} ({}) succeeded: {}",
        report.run_id,
        report.kind,
        sync::summary(&report.counts)
    );
    Ok(())
}

/// SIGINT and SIGTERM end a one-off pass at the next page boundary.
fn stop_on_signals(shutdown: &Shutdown) {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    // SIGUSR1 (approve-deletions waking whoever holds the database) must not end a one-off
    // pass, as its default action would: it is caught and ignored.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1]) else {
        log::warn!("sync: cannot install signal handlers; Ctrl-C ends the pass abruptly");
        return;
    };
    let shutdown = shutdown.clone();
    std::thread::spawn(move || {
        if signals.forever().any(|signal| signal != SIGUSR1) {
            log::info!("sync: stopping after the page in flight");
            shutdown.request();
        }
    });
}

/// `check`: every step an operator needs working, one line each; exit 1 if any fails.
fn check(path: &std::path::Path) -> Result<(), CliError> {
    let mut report = CheckReport::default();
    let config = load_config(path)?;
    report.ok("config", format!("{} is valid", config.path.display()));
    for warning in &config.warnings {
        report.warn("config", warning.clone());
    }
    check_credential(&config, &mut report);
    let shutdown = Shutdown::new();
    let graph = Graph::connect(&config, &shutdown);
    match graph.auth().token() {
        Ok(token) => {
            let roles = token
                .roles()
                .map(|r| {
                    format!(
                        "; token roles: {}",
                        if r.is_empty() {
                            "none".to_owned()
                        } else {
                            r.join(", ")
                        }
                    )
                })
                .unwrap_or_default();
            let (who, from) = match &config.entra.credential {
                Credential::ManagedIdentity(identity) => (
                    format!(
                        "the managed identity (object id {})",
                        token.object_id().as_deref().unwrap_or("not in the token")
                    ),
                    identity.endpoint.clone(),
                ),
                _ => (
                    format!(
                        "application {}",
                        config.entra.client_id.as_deref().unwrap_or_default()
                    ),
                    config.entra.authority_host.clone(),
                ),
            };
            let form = match &config.entra.credential {
                Credential::Certificate(_) => format!(
                    "; client assertion accepted as {}",
                    graph.auth().assertion_form()
                ),
                _ => String::new(),
            };
            report.ok(
                "sign-in",
                format!("token for {who} from {from}{form}{roles}"),
            );
        }
        Err(e) => {
            report.fail("sign-in", e.to_string());
            report.print();
            return Err(CliError::Failed("check: sign-in failed".into()));
        }
    }
    for resource in Resource::ALL {
        let url = format!(
            "{}/v1.0/{}/delta?$select=id",
            config.entra.graph_endpoint,
            resource.name()
        );
        match graph.get_page(resource, &url) {
            Ok(_) => report.ok(
                resource.name(),
                format!("{} can be read", resource.permission()),
            ),
            Err(e) => report.fail(resource.name(), e.to_string()),
        }
    }
    check_app_credentials(&config, &graph, &mut report);
    check_mapping(&config, &graph, &mut report);
    report.print();
    if report.failed {
        Err(CliError::Failed("check: some checks failed".into()))
    } else {
        Ok(())
    }
}

/// The credential in use (kind, and for a certificate its thumbprint and validity) and its
/// expiry: a warning from 30 days before, a failure after (or before a certificate is valid).
fn check_credential(config: &Config, report: &mut CheckReport) {
    let now = time::OffsetDateTime::now_utc();
    let credential = &config.entra.credential;
    let label = match credential {
        Credential::Secret { .. } => "secret",
        _ => "credential",
    };
    let days_left = config.secret_days_left(now.date()).unwrap_or_default();
    let describe = match credential {
        Credential::Certificate(cert) => format!(
            "{}; notAfter {} ({days_left} days left)",
            credential.describe(),
            cert.not_after.date()
        ),
        _ => credential.describe(),
    };
    report.ok("credential", format!("{}: {describe}", credential.kind()));
    match auth::credential_expiry(config, now) {
        Some((log::Level::Error, message)) => report.fail(label, message),
        Some((_, message)) => report.warn(label, message),
        None if matches!(credential, Credential::Secret { .. }) => match config
            .entra
            .client_secret_expires
        {
            Some(date) => report.ok("secret", format!("expires {date} ({days_left} days left)")),
            None => report.warn(
                "secret",
                "expiry unknown: set entra.client_secret_expires to the secret's \"Expires\" date \
                     (App registrations > Certificates & secrets) to be warned 30 days before"
                    .to_owned(),
            ),
        },
        None => {}
    }
}

/// Optional (graph-protocol.md 1.5): with Application.Read.All, the expiry Entra holds for
/// the secret or certificate in use (matched by the secret's hint or the certificate's
/// thumbprint), and other credentials of the app that expire within 30 days.
fn check_app_credentials(config: &Config, graph: &Graph, report: &mut CheckReport) {
    let (Some(app_id), in_use) = (config.entra.client_id.as_deref(), &config.entra.credential)
    else {
        return;
    };
    let matches = |c: &crate::graph::AppCredential| match in_use {
        Credential::Secret { secret, .. } => {
            c.kind == "secret"
                && c.hint
                    .as_deref()
                    .is_some_and(|h| !h.is_empty() && secret.expose().starts_with(h))
        }
        Credential::Certificate(cert) => {
            c.kind == "certificate" && c.thumbprint.as_deref() == Some(cert.sha1.as_slice())
        }
        _ => false,
    };
    let today = time::OffsetDateTime::now_utc().date();
    let credentials = match graph.application_credentials(app_id) {
        Ok(crate::graph::AppCredentials::Listed(list)) => list,
        Ok(crate::graph::AppCredentials::NotPermitted) => {
            report.ok(
                "entra",
                "the app's own credentials were not read (optional: with the Application.Read.All \
                 application permission, check also shows the expiry Entra holds for the credential \
                 in use and warns about the app's other secrets and certificates expiring soon)"
                    .to_owned(),
            );
            return;
        }
        Err(e) => {
            report.warn(
                "entra",
                format!("cannot read the app's own credentials: {e}"),
            );
            return;
        }
    };
    let describe = |c: &crate::graph::AppCredential| {
        let ends = c
            .ends
            .map(|d| format!("{d} ({} days left)", (d - today).whole_days()))
            .unwrap_or_else(|| "no end date".to_owned());
        format!("{} \"{}\" ends {ends}", c.kind, c.display_name)
    };
    match credentials.iter().find(|c| matches(c)) {
        Some(c) => {
            let days = c.ends.map(|d| (d - today).whole_days());
            let line = format!("Entra holds the {} in use: {}", c.kind, describe(c));
            match days {
                Some(d) if d < 0 => report.fail("entra", line),
                Some(d) if d <= 30 => report.warn("entra", line),
                _ => report.ok("entra", line),
            }
        }
        None if matches!(
            in_use,
            Credential::Secret { .. } | Credential::Certificate(_)
        ) =>
        {
            report.warn(
                "entra",
                format!(
                    "none of the app's {} credentials in Entra matches the {} in use",
                    credentials.len(),
                    in_use.kind()
                ),
            );
        }
        None => {}
    }
    for other in credentials.iter().filter(|c| !matches(c)) {
        if other.ends.is_some_and(|d| (d - today).whole_days() <= 30) {
            report.warn(
                "entra",
                format!("another credential of the app: {}", describe(other)),
            );
        }
    }
}

/// Resolves every mapped group against the tenant by paging groups/delta for ids and names
/// (keeping only the groups the mapping names, so memory does not grow with the tenant),
/// with the pins the database holds, by the rules the team is computed with.
fn check_mapping(config: &Config, graph: &Graph, report: &mut CheckReport) {
    if config.mapping.groups.is_empty() {
        report.warn(
            "mapping",
            "mapping.groups is empty: the team will have no members".to_owned(),
        );
        return;
    }
    let pins = match config.sync.database.exists() {
        true => match Store::open_read_only(&config.sync.database)
            .and_then(|store| store.mapping_view(&[], &[]))
        {
            Ok(view) => view.pins,
            Err(e) => {
                report.fail("mapping", format!("cannot read the pinned groups: {e}"));
                return;
            }
        },
        false => Vec::new(),
    };
    let (mut ids, names) = team::lookups(&config.mapping.groups);
    ids.extend(pins.iter().map(|p| p.group_id.clone()));
    let mut groups = Vec::new();
    let mut url = format!(
        "{}/v1.0/groups/delta?$select=id,displayName",
        config.entra.graph_endpoint
    );
    loop {
        let page = match graph.get_page(Resource::Groups, &url) {
            Ok(page) => page,
            Err(e) => {
                report.fail("mapping", format!("cannot list groups: {e}"));
                return;
            }
        };
        for group in page.objects.iter().filter(|g| g.removed.is_none()) {
            let name = group
                .props
                .get("displayName")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if ids.contains(&group.id.to_lowercase()) || names.contains(&name.to_lowercase()) {
                groups.push(store::GroupRef {
                    id: group.id.to_lowercase(),
                    name: name.to_owned(),
                    deleted: false,
                });
            }
        }
        match page.next {
            crate::graph::Next::More(next) => url = next,
            crate::graph::Next::Done(_) => break,
        }
    }
    let view = store::MappingView {
        groups,
        pins,
        complete: false,
    };
    for entry in team::resolve(&config.mapping.groups, &view, "") {
        if let team::Outcome::Group { group } = &entry.outcome {
            let pinned = match (&entry.pin, crate::config::is_guid(&entry.entry)) {
                (Some(pin), _) => format!("; pinned since {}", pin.pinned_at),
                (None, true) => String::new(),
                (None, false) => "; the next pass pins the entry to this group".to_owned(),
            };
            report.ok(
                "mapping",
                format!(
                    "\"{}\" is {} ({}){pinned}",
                    entry.entry, group.name, group.id
                ),
            );
        }
        for note in entry.notes() {
            report.warn("mapping", note);
        }
        if let Some(problem) = entry.problem() {
            report.fail("mapping", problem);
        }
    }
}

#[derive(Default)]
struct CheckReport {
    lines: Vec<String>,
    failed: bool,
}

impl CheckReport {
    fn ok(&mut self, what: &str, detail: String) {
        self.lines.push(format!("ok    {what}: {detail}"));
    }
    fn warn(&mut self, what: &str, detail: String) {
        self.lines.push(format!("warn  {what}: {detail}"));
    }
    fn fail(&mut self, what: &str, detail: String) {
        self.failed = true;
        self.lines.push(format!("FAIL  {what}: {detail}"));
    }
    fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
    }
}
