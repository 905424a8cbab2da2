//! `entra-sync run`: the long-running service. The only place that wires the pieces
//! together: one loop reads [`Event`]s (signals, file edits) and runs passes on schedule.
//!
//! It never runs on a half-valid configuration: a new one is validated whole before it
//! replaces the one in force, and a bad edit is logged and ignored.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::config::load_config;
use crate::exit::CliError;
use crate::graph::Graph;
use crate::lock::{self, DatabaseLock};
use crate::shutdown::Shutdown;
use crate::store::{self, Store};
use crate::sync::{self, PassOptions, SyncError};
use crate::systemd::{self, Heartbeat};
use crate::watch::{self, Event};

/// Delta links die after about 7 days unused (graph-protocol.md 3.4): whatever the interval,
/// a pass runs at least this often to keep them alive.
const KEEPALIVE: Duration = Duration::from_secs(24 * 60 * 60);
/// An edited file is applied once its content has stayed the same this long (each change
/// restarts the wait), so a writer that pauses half-way is not read half-way.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// A file still changing after this long is not applied now; its next event tries again.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// How often the content is compared while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// The main loop wakes at least this often to beat the watchdog heartbeat.
const TICK: Duration = Duration::from_secs(1);
/// How often a due pass looks whether the stopped pass's fetchers have ended.
const FETCHERS_POLL: Duration = Duration::from_millis(100);
/// `meta` key of the daemon's state, read by `status`.
pub const STATE_KEY: &str = "daemon";

/// What the daemon is doing, kept in the database for `entra-sync status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonState {
    pub pid: u32,
    /// starting | idle | syncing | disabled | stopped
    pub state: String,
    pub enabled: bool,
    pub last_pass_at: Option<String>,
    pub last_pass_status: Option<String>,
    pub next_pass_at: Option<String>,
    pub last_error: Option<String>,
    /// Why the configuration file on disk is not in force, if it is not.
    pub config_error: Option<String>,
    pub updated_at: String,
}

pub fn run(config_path: &Path) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let lock = lock::acquire(&config.sync.database)?;
    let mut store = Store::open(&config.sync.database)?;
    // A damaged file would fail every pass forever: stop now, saying how to recover.
    store.quick_check()?;
    store.close_abandoned_runs(&store::now())?;

    let shutdown = Shutdown::new();
    let (sender, events) = mpsc::channel();
    // Stops the pass in progress at a page boundary: raised by SIGTERM, SIGHUP and edits,
    // lowered when a pass starts. The pass resumes from its last page after a reload.
    let interrupt = Shutdown::new();
    watch::signals(sender.clone(), shutdown.clone(), interrupt.clone())
        .map_err(|e| CliError::Failed(format!("daemon: cannot install signal handlers: {e}")))?;
    let watcher = watch::files(&watched_files(&config), sender.clone(), interrupt.clone())
        .map_err(|e| {
            CliError::Failed(format!(
                "daemon: cannot watch {}: {e}",
                config.path.display()
            ))
        })?;
    let heartbeat = Heartbeat::new();
    systemd::start_watchdog(heartbeat.clone());

    let graph = Graph::connect(&config, &interrupt);
    let mut daemon = Daemon {
        state: DaemonState {
            pid: std::process::id(),
            enabled: config.sync.enabled,
            ..DaemonState::default()
        },
        watched: watched_files(&config),
        config,
        store,
        graph,
        shutdown,
        interrupt,
        events,
        sender,
        heartbeat,
        next_pass: Instant::now(),
        previous_pass: None,
        wait_logged: false,
        fatal: None,
        repeated_failure: None,
        _watcher: watcher,
        _lock: lock,
    };
    log::info!(
        "daemon: started (pid {}), config {}, database {}",
        std::process::id(),
        daemon.config.path.display(),
        daemon.config.sync.database.display()
    );
    daemon.main_loop()
}

struct Daemon {
    config: Config,
    store: Store,
    graph: Graph,
    shutdown: Shutdown,
    interrupt: Shutdown,
    events: Receiver<Event>,
    sender: mpsc::Sender<Event>,
    heartbeat: Heartbeat,
    next_pass: Instant,
    /// The stop flag of the last pass, while fetch threads of it may still run.
    previous_pass: Option<Shutdown>,
    wait_logged: bool,
    /// Why the daemon must stop with an error (a damaged database), once it must.
    fatal: Option<CliError>,
    state: DaemonState,
    watched: Vec<PathBuf>,
    /// The last failure (its [`failure_key`]) and how often it repeated, to log it in full
    /// only once.
    repeated_failure: Option<(String, u32)>,
    _watcher: notify::RecommendedWatcher,
    _lock: DatabaseLock,
}

impl Daemon {
    fn main_loop(&mut self) -> Result<(), CliError> {
        self.publish(if self.config.sync.enabled {
            "starting"
        } else {
            "disabled"
        });
        systemd::ready(&self.status_line());
        loop {
            self.heartbeat.beat();
            if self.shutdown.is_requested() {
                break;
            }
            // Pending events go first, so a reload that paused a pass is applied before the
            // pass resumes.
            let scheduled = self.config.sync.enabled && Instant::now() >= self.next_pass;
            let fetching = scheduled && self.previous_pass_fetching();
            let due = scheduled && !fetching;
            let wait = if due {
                Duration::ZERO
            } else if fetching {
                FETCHERS_POLL
            } else if self.config.sync.enabled {
                self.next_pass
                    .saturating_duration_since(Instant::now())
                    .min(TICK)
            } else {
                TICK
            };
            match self.events.recv_timeout(wait) {
                Ok(Event::Shutdown) => break,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) if due => self.pass(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.fatal.is_some() {
                break;
            }
        }
        systemd::stopping();
        log::info!("daemon: stopping");
        self.publish("stopped");
        self.fatal.take().map_or(Ok(()), Err)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Shutdown => self.shutdown.request(),
            Event::SyncNow if !self.config.sync.enabled => {
                log::info!("daemon: SIGUSR1 ignored: sync is switched off by sync.enabled = false");
            }
            Event::SyncNow => {
                log::info!("daemon: SIGUSR1, starting a pass now");
                self.next_pass = Instant::now();
            }
            Event::Reload => self.reload("SIGHUP"),
            Event::FileChanged => {
                if self.settle() {
                    self.reload("the file changed");
                }
            }
        }
    }

    /// Waits until the watched files' contents have stayed the same for DEBOUNCE, swallowing
    /// the burst of file events meanwhile; signals that come in are handled after. False
    /// when they kept changing for SETTLE_MAX (or a stop came): then nothing is applied now.
    fn settle(&mut self) -> bool {
        let started = Instant::now();
        let mut last = contents(&self.watched);
        let mut stable_since = Instant::now();
        let mut other = Vec::new();
        let settled = loop {
            self.heartbeat.beat();
            let left = (stable_since + DEBOUNCE).saturating_duration_since(Instant::now());
            if left.is_zero() {
                break true;
            }
            match self.events.recv_timeout(left.min(SETTLE_POLL)) {
                Ok(Event::FileChanged) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    other.push(Event::Shutdown);
                    break false;
                }
                Ok(event) => other.push(event),
            }
            let now = contents(&self.watched);
            if now != last {
                last = now;
                stable_since = Instant::now();
            }
            if started.elapsed() >= SETTLE_MAX {
                log::warn!(
                    "daemon: {} kept changing for {}s; not applied until it stays the same for \
                     {}s (save by writing a new file and renaming it over the old one)",
                    self.config.path.display(),
                    SETTLE_MAX.as_secs(),
                    DEBOUNCE.as_secs()
                );
                break false;
            }
        };
        for event in other {
            let _ = self.sender.send(event);
        }
        settled
    }

    fn pass(&mut self) {
        let full = self.full_pass_due();
        self.publish("syncing");
        systemd::status(&format!(
            "syncing{}",
            if full { " (full pass)" } else { "" }
        ));
        crate::auth::log_secret_expiry(&self.config);
        let options = PassOptions {
            full,
            heartbeat: Some(self.heartbeat.clone()),
            allow_deletions: false,
        };
        // The interrupt is lowered only here, once no fetcher of an earlier pass runs (the
        // main loop waits for them), so none of them sees it lowered and carries on with the
        // old configuration and token. Each pass gets its own flag, raised with the
        // interrupt and when the pass returns.
        self.interrupt.reset();
        if self.shutdown.is_requested() {
            self.interrupt.request(); // a SIGTERM that came just before the reset
        }
        let stop = self.interrupt.child();
        let result = sync::run_pass(&self.config, &mut self.store, &self.graph, options, &stop);
        // A fetcher the writer left behind (a stop, a failed page) makes no further request.
        stop.request();
        self.previous_pass = Some(stop);
        self.state.last_pass_at = Some(store::now());
        match result {
            Ok(_) => {
                self.state.last_pass_status = Some("succeeded".into());
                self.state.last_error = None;
                if self.repeated_failure.take().is_some() {
                    log::info!("daemon: sync works again");
                }
            }
            Err(SyncError::Stopped { .. }) => {
                self.state.last_pass_status = Some("interrupted".into());
                if !self.shutdown.is_requested() {
                    // A reload stopped it: handle the reload, then resume from the last page.
                    log::info!("daemon: pass paused for a reload; it resumes right after");
                    self.next_pass = Instant::now();
                    self.publish("idle");
                    return;
                }
            }
            Err(SyncError::Store(error)) if error.is_corruption() => {
                // Every further pass would fail the same way: stop with EX_DATAERR and the
                // way to recover, quick_check's findings first.
                self.state.last_pass_status = Some("failed".into());
                self.fatal = Some(match self.store.quick_check() {
                    Err(checked) => checked.into(),
                    Ok(()) => error.into(),
                });
                return;
            }
            Err(error) => {
                self.state.last_pass_status = Some("failed".into());
                self.report_failure(error.to_string());
                // The next pass signs in afresh: a token keeps the roles it was issued with, so
                // consent granted (or a secret renewed) in Entra after a failure would otherwise
                // go unnoticed until the cached token expires, up to an hour later.
                self.graph = Graph::connect(&self.config, &self.interrupt);
            }
        }
        // The interval counts from the end of a pass, so passes never stack up.
        self.next_pass = Instant::now() + self.config.sync.interval.min(KEEPALIVE);
        self.publish("idle");
        // After the last write of the pass, so the WAL is empty until the next one.
        self.store.checkpoint_after_pass();
        systemd::status(&self.status_line());
    }

    /// True while a fetch thread of the last pass still runs (in a slow request, which ends
    /// at the latest with the HTTP timeouts): the next pass waits for it, so reloads never
    /// pile up fetchers.
    fn previous_pass_fetching(&mut self) -> bool {
        let Some(previous) = &self.previous_pass else {
            return false;
        };
        let running = previous.working();
        if running == 0 {
            self.previous_pass = None;
            self.wait_logged = false;
            return false;
        }
        if !self.wait_logged {
            self.wait_logged = true;
            log::info!(
                "daemon: the next pass waits for {running} request(s) of the stopped pass to end"
            );
        }
        true
    }

    /// Logs a failure in full the first time, briefly while it repeats.
    fn report_failure(&mut self, message: String) {
        self.state.last_error = Some(message.clone());
        let key = failure_key(&message);
        match &mut self.repeated_failure {
            Some((last, count)) if *last == key => {
                *count += 1;
                log::error!(
                    "daemon: pass failed again with the same error ({} times in a row); next try in {}",
                    count,
                    humantime::format_duration(self.config.sync.interval.min(KEEPALIVE))
                );
            }
            _ => {
                log::error!("{message}");
                self.repeated_failure = Some((key, 1));
            }
        }
    }

    /// True when no full pass has succeeded within `sync.full_sync_interval`: a reconciling
    /// full pass catches deletions that delta failed to report (graph-protocol.md 9.17).
    fn full_pass_due(&self) -> bool {
        let last = match self.store.last_full_pass_at() {
            Ok(Some(at)) => at,
            // No full pass yet: the first pass is full anyway (there are no delta links).
            _ => return false,
        };
        let Ok(at) =
            time::OffsetDateTime::parse(&last, &time::format_description::well_known::Rfc3339)
        else {
            return true;
        };
        let age = time::OffsetDateTime::now_utc() - at;
        age.whole_seconds() >= self.config.sync.full_sync_interval.as_secs() as i64
    }

    fn reload(&mut self, why: &str) {
        systemd::reloading();
        match load_config(&self.config.path) {
            Err(error) => {
                log::error!("{error}; keeping the configuration in force until the file is fixed");
                self.state.config_error = Some(error.to_string());
            }
            Ok(new) => {
                self.state.config_error = None;
                self.apply(new, why);
            }
        }
        self.publish(if self.config.sync.enabled {
            "idle"
        } else {
            "disabled"
        });
        systemd::ready(&self.status_line());
    }

    fn apply(&mut self, mut new: Config, why: &str) {
        // Before the comparison: a symbolic link pointed at another file with the same
        // content changes no setting, but the file to watch.
        self.watch(&new);
        if new == self.config {
            log::debug!("daemon: reload ({why}): nothing changed");
            return;
        }
        log::info!("daemon: reloading the configuration ({why})");
        for key in self.config.needs_restart(&new) {
            log::warn!(
                "daemon: {key} changed; restart entra-sync to apply it (systemctl restart \
                 entra-sync); still using {}",
                self.config.sync.database.display()
            );
        }
        new.sync.database = self.config.sync.database.clone();
        if new.entra != self.config.entra {
            // A fresh client drops the cached token; links of another tenant or endpoint
            // are not reused (sync::Round::plan compares them).
            log::info!("daemon: credentials or endpoints changed, signing in again");
            self.graph = Graph::connect(&new, &self.interrupt);
        }
        let mapping_changed = new.mapping != self.config.mapping;
        let switched_on = new.sync.enabled && !self.config.sync.enabled;
        if new.sync.enabled != self.config.sync.enabled {
            log::info!(
                "daemon: sync {} by sync.enabled",
                if new.sync.enabled {
                    "switched on"
                } else {
                    "switched off; no requests until it is switched on"
                }
            );
        }
        if new.sync.interval != self.config.sync.interval && !switched_on {
            let previous = self.config.sync.interval.min(KEEPALIVE);
            let started = self
                .next_pass
                .checked_sub(previous)
                .unwrap_or_else(Instant::now);
            self.next_pass = started + new.sync.interval.min(KEEPALIVE);
        }
        self.state.enabled = new.sync.enabled;
        self.config = new;
        if switched_on {
            self.next_pass = Instant::now();
        }
        if mapping_changed {
            self.recompute_team();
        }
    }

    /// Watches `config`'s files (and link targets) if they are not the ones watched.
    fn watch(&mut self, config: &Config) {
        let files = watched_files(config);
        if files != self.watched {
            match watch::files(&files, self.sender.clone(), self.interrupt.clone()) {
                Ok(watcher) => {
                    self._watcher = watcher;
                    self.watched = files;
                }
                Err(e) => log::warn!(
                    "daemon: cannot watch {}: {e}",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }

    /// Applies a new mapping from the database alone, at once, without Graph.
    fn recompute_team(&mut self) {
        match sync::remap_team(&self.config, &mut self.store) {
            Ok(update) => log::info!(
                "daemon: mapping changed: team \"{}\" +{} -{}, {} members",
                self.config.mapping.team,
                update.added,
                update.removed,
                update.size
            ),
            Err(e @ SyncError::Held { .. }) => {
                // The deletion guard held removals: shown in `status` and the STATUS line.
                self.state.last_pass_status = Some("failed".into());
                self.report_failure(e.to_string());
                systemd::status(&self.status_line());
            }
            Err(e) => log::error!("daemon: mapping changed but the team could not be updated: {e}"),
        }
    }

    fn status_line(&self) -> String {
        if !self.config.sync.enabled {
            return "disabled by sync.enabled = false".into();
        }
        let last = match (&self.state.last_pass_at, &self.state.last_pass_status) {
            (Some(at), Some(status)) => format!("last pass {status} at {at}"),
            _ => "no pass yet".into(),
        };
        let error = self
            .state
            .last_error
            .as_deref()
            .map(|e| format!("; error: {}", e.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        let config = if self.state.config_error.is_some() {
            "; the edited config file is invalid and not in force (see the log)"
        } else {
            ""
        };
        format!(
            "{last}; next pass at {}{error}{config}",
            self.next_pass_at()
        )
    }

    fn next_pass_at(&self) -> String {
        let left = self.next_pass.saturating_duration_since(Instant::now());
        store::timestamp(time::OffsetDateTime::now_utc() + left)
    }

    /// Records what the daemon is doing where `status` can read it.
    fn publish(&mut self, state: &str) {
        self.state.state = state.into();
        self.state.enabled = self.config.sync.enabled;
        self.state.next_pass_at =
            (self.config.sync.enabled && state != "stopped").then(|| self.next_pass_at());
        self.state.updated_at = store::now();
        let text = serde_json::to_string(&self.state).unwrap_or_default();
        if let Err(e) = self.store.set_meta(STATE_KEY, &text) {
            log::warn!("daemon: cannot record its state: {e}");
        }
        // Every state change (and so the end of every pass) refreshes the metrics file.
        crate::metrics::write(&self.store, &self.config);
    }
}

/// The files whose edits trigger a reload: the config, and the secret file if there is one,
/// and for each that is a symbolic link its target too (an edit of the target changes
/// nothing in the link's directory).
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.path.clone()];
    files.extend(config.entra.credential.files());
    let targets: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.is_symlink())
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .collect();
    files.extend(targets);
    files
}

/// What the watched files hold now (`None` for one that cannot be read), to tell when an
/// edit has settled.
fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

/// What makes two failure messages "the same failure": the message without the parts that
/// change on every attempt (trace, correlation and request ids, timestamps), so a wrong
/// secret failing every interval is logged in full once, not once per fresh trace id.
fn failure_key(message: &str) -> String {
    let mut key = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if let Some(len) = guid_len(rest.as_bytes()) {
            key.push_str("<id>");
            rest = &rest[len..];
        } else if let Some(len) = timestamp_len(rest.as_bytes()) {
            key.push_str("<time>");
            rest = &rest[len..];
        } else {
            key.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    key
}

/// Length of a GUID (`8-4-4-4-12` hex digits) at the start of `text`.
fn guid_len(text: &[u8]) -> Option<usize> {
    let guid = text.get(..36)?;
    let ok = guid.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    ok.then_some(36)
}

/// Length of a date-time (`2025-03-04 10:11:12Z`, `2025-03-04T10:11:12.5Z`) at the start.
fn timestamp_len(text: &[u8]) -> Option<usize> {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00";
    let head = text.get(..SHAPE.len())?;
    let ok = head.iter().zip(SHAPE).all(|(b, s)| match s {
        b'0' => b.is_ascii_digit(),
        b'T' => *b == b'T' || *b == b' ',
        _ => b == s,
    });
    if !ok {
        return None;
    }
    let mut len = SHAPE.len();
    if text.get(len) == Some(&b'.') {
        len += 1;
        while text.get(len).is_some_and(u8::is_ascii_digit) {
            len += 1;
        }
    }
    if text.get(len) == Some(&b'Z') {
        len += 1;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_key_ignores_ids_and_times() {
        let a = "sign-in: the client secret is wrong (AADSTS7000215, HTTP 401, trace id \
                 0c0c0c0c-1111-4222-8333-444444444444, at 2025-03-04 10:11:12Z)";
        let b = "sign-in: the client secret is wrong (AADSTS7000215, HTTP 401, trace id \
                 9c0c0c0c-1111-4222-8333-44444444444f, at 2025-03-04 10:11:13Z)";
        assert_eq!(failure_key(a), failure_key(b));
        assert!(failure_key(a).contains("trace id <id>, at <time>)"));
        assert_ne!(
            failure_key("graph: users: HTTP 503"),
            failure_key("graph: users: HTTP 504")
        );
        assert_eq!(failure_key("née 2025-03-04T10:11:12.25Z."), "née <time>.");
    }
}
