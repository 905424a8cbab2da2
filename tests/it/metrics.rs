//! The metrics file: written by the daemon after its passes, valid exposition format.

use std::time::Duration;

use crate::sim::MemberKind;
use crate::support::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_daemon_writes_the_metrics_file_after_its_passes() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        for (n, name) in [(1, "Ada Lind"), (2, "Bo Ek"), (3, "Cy Holm")] {
            t.add_user(&u(n), user_props(name));
        }
        t.add_group(&g(1), security_group("Engineering"));
        for n in [1, 2] {
            t.add_member(&g(1), &u(n), MemberKind::User);
        }
    }
    let metrics = env.dir.path().join("entra-sync.prom");
    env.write_config_with(
        r#"groups = ["Engineering"]"#,
        &format!("metrics_file = \"{}\"", metrics.display()),
    );
    let mut daemon = env.spawn(&["run"]);
    let read = || std::fs::read_to_string(&metrics).unwrap_or_default();
    wait_for(
        "a pass in the metrics file",
        Duration::from_secs(60),
        || {
            value(
                &read(),
                "entra_sync_passes_total{kind=\"full\",outcome=\"succeeded\"}",
            ) == Some(1.0)
        },
    );
    // The next (incremental) pass, a second later, rewrites it.
    env.sim.tenant().add_member(&g(1), &u(3), MemberKind::User);
    wait_for(
        "the team change in the metrics file",
        Duration::from_secs(60),
        || {
            value(
                &read(),
                "entra_sync_team_members{team=\"Microsoft Entra ID Users\"}",
            ) == Some(3.0)
        },
    );
    let _ = daemon.kill();
    let _ = daemon.wait();

    let text = read();
    assert_eq!(
        value(&text, "entra_sync_objects{kind=\"user\",state=\"live\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(value(&text, "entra_sync_memberships"), Some(3.0), "{text}");
    assert!(
        value(&text, "entra_sync_graph_requests_total{resource=\"users\"}").unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "entra_sync_passes_total{kind=\"incremental\",outcome=\"succeeded\"}"
        )
        .unwrap()
            >= 1.0
    );
    let success = value(&text, "entra_sync_last_success_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - success).abs() < 600.0, "{success} vs {now}");
    assert!(
        text.contains("entra_sync_delta_link_age_seconds{resource=\"groups\"}"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "entra_sync_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    promtool_check(&text);
}

/// `promtool check metrics` on the daemon's own file; skipped (with a message) only when
/// promtool is absent outside CI. In CI (CI=true) a missing promtool fails.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing in CI: .ci/run installs Debian's prometheus package"
        );
        eprintln!("SKIPPED promtool check: promtool not installed (apt-get install prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", stdout_of(&out.stdout), stdout_of(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

fn stdout_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
