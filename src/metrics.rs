//! The Prometheus metrics file (`sync.metrics_file`): after every pass and every state
//! change the daemon replaces it whole (a temporary file renamed over it), in the text
//! exposition format, for node_exporter's textfile collector. No port is opened.
//!
//! `gather` reads the database, the config and the process's Graph counters into a
//! [`Snapshot`]; `render` is a pure function of it; `write` puts it in place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::counters;
use crate::graph::Resource;
use crate::guard::{self, Target};
use crate::store::{Contents, PassRecord, Store, StoreError};

/// Pass kinds and outcomes, so every series exists (at 0) before its first occurrence:
/// alert rules and `rate()` need the series to be there.
const KINDS: [&str; 3] = ["full", "incremental", "team"];
const OUTCOMES: [&str; 3] = ["succeeded", "failed", "interrupted"];

/// Everything the file reports, gathered at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub enabled: bool,
    pub passes: PassRecord,
    pub contents: Contents,
    pub team: String,
    /// (resource, Unix seconds of its delta link), when there is one.
    pub delta_links: Vec<(&'static str, Option<i64>)>,
    /// When the credential in use expires ([`Config::credential_expires`]: the secret's
    /// `entra.client_secret_expires` or the certificate's `notAfter` date), as Unix seconds
    /// (the start of that day, UTC).
    pub credential_expiry: Option<i64>,
    /// (kind, deletions the guard holds) for users, groups and the team.
    pub held_deletions: Vec<(&'static str, u64)>,
    /// (resource, Graph responses, of which 429) since the process started.
    pub graph: Vec<(&'static str, u64, u64)>,
    pub now: i64,
}

pub fn gather(store: &Store, config: &Config) -> Result<Snapshot, StoreError> {
    let mut delta_links = Vec::new();
    for resource in Resource::ALL {
        let state = store.sync_state(resource)?;
        delta_links.push((
            resource.name(),
            state.delta_link_at.as_deref().and_then(unix),
        ));
    }
    Ok(Snapshot {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        enabled: config.sync.enabled,
        passes: store.pass_record()?,
        contents: store.contents(&config.mapping.team)?,
        team: config.mapping.team.clone(),
        delta_links,
        credential_expiry: config
            .credential_expires()
            .map(|d| d.midnight().assume_utc().unix_timestamp()),
        held_deletions: Target::ALL
            .iter()
            .map(|t| t.key())
            .zip(guard::held_counts(store)?)
            .collect(),
        graph: counters::graph_totals(),
        now: OffsetDateTime::now_utc().unix_timestamp(),
    })
}

/// Writes the metrics file if one is configured. A failure is logged, never fatal: the
/// metrics must not stop the sync.
pub fn write(store: &Store, config: &Config) {
    let Some(path) = &config.sync.metrics_file else {
        return;
    };
    let result = gather(store, config)
        .map_err(|e| e.to_string())
        .and_then(|snapshot| replace(path, &render(&snapshot)).map_err(|e| e.to_string()));
    if let Err(e) = result {
        log::warn!(
            "metrics: cannot write {}: {e}; check that the directory exists and that the service \
             may write it (README.md, \"Metrics\")",
            path.display()
        );
    }
}

/// Replaces `path` atomically: readers see the old file or the new one, never a part.
/// The temporary name does not end in `.prom`, so the textfile collector ignores it.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        // node_exporter runs as another user; the service's UMask=0077 would hide the file.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn unix(at: &str) -> Option<i64> {
    OffsetDateTime::parse(at, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// One metric family: HELP, TYPE and its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            self.out.push_str(&format!("{{{}}}", labels.join(",")));
        }
        self.out.push_str(&format!(" {value}\n"));
    }
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The file's text. Names follow Prometheus' conventions: `entra_sync_` prefix, base units
/// in the name (`_seconds`, `_timestamp_seconds`), `_total` for counters.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let o = &mut out;

    let name = "entra_sync_build_info";
    Family::new(
        o,
        name,
        "gauge",
        "Always 1; the version of entra-sync that wrote this file.",
    )
    .sample(name, &[("version", &s.version)], 1);
    let name = "entra_sync_enabled";
    Family::new(
        o,
        name,
        "gauge",
        "1 when syncing is on, 0 when paused by sync.enabled = false.",
    )
    .sample(name, &[], u8::from(s.enabled));

    if let Some(at) = s.passes.last_success.as_deref().and_then(unix) {
        let name = "entra_sync_last_success_timestamp_seconds";
        Family::new(
            o,
            name,
            "gauge",
            "When the last successful pass finished (Unix time).",
        )
        .sample(name, &[], at);
    }
    if let Some(at) = s.passes.last_attempt.as_deref().and_then(unix) {
        let name = "entra_sync_last_attempt_timestamp_seconds";
        Family::new(o, name, "gauge", "When the last pass started (Unix time).").sample(
            name,
            &[],
            at,
        );
    }

    let name = "entra_sync_last_pass_duration_seconds";
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "How long the last finished pass of each kind took.",
    );
    for (kind, _, started, finished) in &s.passes.last_by_kind {
        if let (Some(a), Some(b)) = (unix(started), unix(finished)) {
            f.sample(name, &[("kind", kind)], (b - a).max(0));
        }
    }
    let name = "entra_sync_last_pass_outcome";
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "1 for the outcome of the last finished pass of each kind, 0 for the other outcomes.",
    );
    for (kind, status, _, _) in &s.passes.last_by_kind {
        for outcome in OUTCOMES {
            f.sample(
                name,
                &[("kind", kind), ("outcome", outcome)],
                u8::from(status == outcome),
            );
        }
    }
    let name = "entra_sync_passes_total";
    let mut f = Family::new(
        o,
        name,
        "counter",
        "Finished passes by kind and outcome (from the database).",
    );
    for kind in KINDS {
        for outcome in OUTCOMES {
            let n = count(&s.passes, kind, outcome);
            f.sample(name, &[("kind", kind), ("outcome", outcome)], n);
        }
    }
    let name = "entra_sync_pass_failures_total";
    let failures: i64 = KINDS.iter().map(|k| count(&s.passes, k, "failed")).sum();
    Family::new(
        o,
        name,
        "counter",
        "Passes that failed (from the database).",
    )
    .sample(name, &[], failures);

    let name = "entra_sync_objects";
    let c = &s.contents;
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "Users and groups in the database by state (deleted: tombstones).",
    );
    f.sample(name, &[("kind", "user"), ("state", "live")], c.users);
    f.sample(
        name,
        &[("kind", "user"), ("state", "deleted")],
        c.users_deleted,
    );
    f.sample(name, &[("kind", "group"), ("state", "live")], c.groups);
    f.sample(
        name,
        &[("kind", "group"), ("state", "deleted")],
        c.groups_deleted,
    );
    let name = "entra_sync_memberships";
    Family::new(
        o,
        name,
        "gauge",
        "Direct group memberships in the database.",
    )
    .sample(name, &[], c.memberships);
    let name = "entra_sync_team_members";
    Family::new(o, name, "gauge", "Members of the mapped team.").sample(
        name,
        &[("team", &s.team)],
        c.team_members,
    );

    let name = "entra_sync_graph_requests_total";
    let mut f = Family::new(
        o,
        name,
        "counter",
        "Graph responses received by this process, by resource.",
    );
    for (resource, requests, _) in &s.graph {
        f.sample(name, &[("resource", resource)], requests);
    }
    let name = "entra_sync_graph_throttled_responses_total";
    let mut f = Family::new(
        o,
        name,
        "counter",
        "Graph 429 (throttled) responses received by this process, by resource.",
    );
    for (resource, _, throttled) in &s.graph {
        f.sample(name, &[("resource", resource)], throttled);
    }

    let name = "entra_sync_delta_link_age_seconds";
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "Age of the stored delta link by resource when this file was written (Graph keeps them 7 days).",
    );
    for (resource, at) in &s.delta_links {
        if let Some(at) = at {
            f.sample(name, &[("resource", resource)], (s.now - at).max(0));
        }
    }
    if let Some(expiry) = s.credential_expiry {
        let name = "entra_sync_credential_expiry_timestamp_seconds";
        Family::new(o, name, "gauge", "When the credential in use expires (client_secret_expires or the certificate's notAfter; start of that day, Unix time).")
            .sample(name, &[], expiry);
    }
    let name = "entra_sync_held_deletions";
    let mut f = Family::new(
        o,
        name,
        "gauge",
        "Deletions the deletion guard holds by kind (users, groups, team) until approve-deletions.",
    );
    for (kind, held) in &s.held_deletions {
        f.sample(name, &[("kind", kind)], held);
    }
    let name = "entra_sync_metrics_written_timestamp_seconds";
    Family::new(o, name, "gauge", "When this file was written (Unix time).").sample(
        name,
        &[],
        s.now,
    );
    out
}

fn count(passes: &PassRecord, kind: &str, outcome: &str) -> i64 {
    passes
        .totals
        .iter()
        .filter(|(k, o, _)| k == kind && o == outcome)
        .map(|(_, _, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "1.2.3".into(),
            enabled: true,
            passes: PassRecord {
                last_success: Some("2026-03-01T10:00:30Z".into()),
                last_attempt: Some("2026-03-01T10:05:00Z".into()),
                totals: vec![
                    ("full".into(), "succeeded".into(), 2),
                    ("incremental".into(), "failed".into(), 3),
                    ("incremental".into(), "succeeded".into(), 40),
                ],
                last_by_kind: vec![
                    (
                        "full".into(),
                        "succeeded".into(),
                        "2026-03-01T10:00:00Z".into(),
                        "2026-03-01T10:00:30Z".into(),
                    ),
                    (
                        "incremental".into(),
                        "failed".into(),
                        "2026-03-01T10:05:00Z".into(),
                        "2026-03-01T10:05:02Z".into(),
                    ),
                ],
            },
            contents: Contents {
                users: 10,
                users_deleted: 1,
                groups: 3,
                groups_deleted: 0,
                memberships: 12,
                team_members: 4,
            },
            team: "Ops \"A\" \\ B".into(),
            delta_links: vec![("users", Some(1_772_359_200)), ("groups", None)],
            credential_expiry: Some(1_800_000_000),
            held_deletions: vec![("users", 0), ("groups", 0), ("team", 612)],
            graph: vec![("users", 7, 1), ("groups", 9, 0)],
            now: 1_772_359_500,
        }
    }

    #[test]
    fn render_reports_every_metric_with_its_labels() {
        let text = render(&snapshot());
        for line in [
            "entra_sync_build_info{version=\"1.2.3\"} 1",
            "entra_sync_last_success_timestamp_seconds 1772359230",
            "entra_sync_last_attempt_timestamp_seconds 1772359500",
            "entra_sync_last_pass_duration_seconds{kind=\"full\"} 30",
            "entra_sync_last_pass_outcome{kind=\"incremental\",outcome=\"failed\"} 1",
            "entra_sync_last_pass_outcome{kind=\"incremental\",outcome=\"succeeded\"} 0",
            "entra_sync_passes_total{kind=\"incremental\",outcome=\"succeeded\"} 40",
            "entra_sync_passes_total{kind=\"team\",outcome=\"failed\"} 0",
            "entra_sync_pass_failures_total 3",
            "entra_sync_objects{kind=\"user\",state=\"deleted\"} 1",
            "entra_sync_memberships 12",
            "entra_sync_team_members{team=\"Ops \\\"A\\\" \\\\ B\"} 4",
            "entra_sync_graph_requests_total{resource=\"groups\"} 9",
            "entra_sync_graph_throttled_responses_total{resource=\"users\"} 1",
            "entra_sync_delta_link_age_seconds{resource=\"users\"} 300",
            "entra_sync_held_deletions{kind=\"team\"} 612",
            "entra_sync_held_deletions{kind=\"users\"} 0",
            "entra_sync_credential_expiry_timestamp_seconds 1800000000",
            "# TYPE entra_sync_passes_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains("resource=\"groups\"} 0\nentra_sync_credential"),
            "{text}"
        );
        assert!(
            !text.contains("delta_link_age_seconds{resource=\"groups\""),
            "{text}"
        );
    }

    /// A real exposition-format parser reads the file: Prometheus' own `promtool check
    /// metrics` (Debian package `prometheus`, installed by .ci/run), which also lints names.
    #[test]
    fn promtool_accepts_the_file() {
        let Some(promtool) = promtool() else {
            return;
        };
        check_with_promtool(&promtool, &render(&snapshot()));
        check_with_promtool(&promtool, &render(&Snapshot::default()));
    }

    /// promtool, or None when it is absent outside CI (a clear skip); in CI (CI=true) a
    /// missing promtool fails the test.
    pub(crate) fn promtool() -> Option<String> {
        let found = std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some("promtool".into());
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing in CI: .ci/run installs Debian's prometheus package"
        );
        eprintln!("SKIPPED: promtool not installed (apt-get install prometheus); not in CI");
        None
    }

    pub(crate) fn check_with_promtool(promtool: &str, text: &str) {
        use std::process::{Command, Stdio};
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{text}"
        );
    }

    /// README's alert rules are valid rules over the metrics this file has.
    #[test]
    fn readme_alert_rules_are_valid() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```yaml\ngroups:\n  - name: entra-sync")
            .unwrap()
            + 8;
        let rules = &readme[start..start + readme[start..].find("```").unwrap()];
        let text = render(&snapshot());
        for metric in [
            "entra_sync_last_success_timestamp_seconds",
            "entra_sync_enabled",
            "entra_sync_credential_expiry_timestamp_seconds",
        ] {
            assert!(
                rules.contains(metric) && text.contains(&format!("\n{metric} ")),
                "{metric}"
            );
        }
        let Some(promtool) = promtool() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yml");
        std::fs::write(&file, rules).unwrap();
        let out = std::process::Command::new(promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entra-sync.prom");
        replace(&path, "a 1\n").unwrap();
        replace(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary file left: {names:?}");
    }
}
