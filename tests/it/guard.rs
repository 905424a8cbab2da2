//! The deletion guard: mass deletions, reconciliation and a mapping typo are held past
//! `sync.max_deletions`, survive a restart, and are released by `--allow-deletions` and by
//! `approve-deletions` while a service runs; a held pass shows on the systemd STATUS line.

use std::process::Output;
use std::time::Duration;

use crate::sim::MemberKind;
use crate::support::*;

/// Eight users; Engineering holds 1-6, Marketing 7-8.
fn tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for n in 1..=8 {
        t.add_user(&u(n), user_props(&format!("User {n}")));
    }
    t.add_group(&g(1), security_group("Engineering"));
    t.add_group(&g(2), unified_group("Marketing"));
    for n in 1..=6 {
        t.add_member(&g(1), &u(n), MemberKind::User);
    }
    for n in 7..=8 {
        t.add_member(&g(2), &u(n), MemberKind::User);
    }
}

fn guarded(limit: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_config_with(
        r#"groups = ["Engineering"]"#,
        &format!("max_deletions = {limit}"),
    );
    tenant(&env);
    env.sync();
    assert_eq!(env.team().len(), 6);
    env
}

fn live_users(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM users WHERE deleted_at IS NULL")
}

#[track_caller]
fn assert_held(output: &Output, what: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let err = stderr(output);
    assert!(
        err.contains(&format!("deletion guard: held {what}")),
        "{err}"
    );
    assert!(
        err.contains("entra-sync approve-deletions") && err.contains("--allow-deletions"),
        "the ways forward: {err}"
    );
}

fn last_run(env: &TestEnv) -> String {
    env.strings(
        "SELECT status || ': ' || coalesce(error, '') FROM sync_runs ORDER BY id DESC LIMIT 1",
    )
    .remove(0)
}

#[test]
fn mass_deletes_are_held_until_allowed_and_the_hold_survives_a_restart() {
    let env = guarded("2");
    {
        let mut t = env.sim.tenant();
        for n in 1..=4 {
            t.soft_delete_user(&u(n));
        }
        t.update_user(&u(8), serde_json::json!({"displayName": "Eight"}));
    }
    let out = env.run(&["sync"]);
    assert_held(&out, "4 users marked deleted");
    // Held: the rows stay live and the team keeps them; everything else applied.
    assert_eq!(live_users(&env), 8);
    assert_eq!(env.team().len(), 6);
    assert_eq!(
        env.strings(&format!(
            "SELECT display_name FROM users WHERE id = '{}'",
            u(8)
        )),
        ["Eight"]
    );
    assert!(
        last_run(&env).starts_with("failed: deletion guard: held 4"),
        "{}",
        last_run(&env)
    );
    let status = env.run(&["status"]);
    assert!(
        stdout(&status).contains("deletion guard: held 4 users marked deleted"),
        "status shows the hold:\n{}",
        stdout(&status)
    );

    // A new process (a restart) still holds them, and one more deletion too.
    env.sim.tenant().soft_delete_user(&u(5));
    let out = env.run(&["sync"]);
    assert_held(&out, "");
    assert_eq!(live_users(&env), 8);

    let out = env.run(&["sync", "--allow-deletions"]);
    assert_success(&out);
    assert_eq!(live_users(&env), 3);
    assert_eq!(env.team(), [u(6)]);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE action = 'deleted' AND detail LIKE '%\"approved\":\"sync --allow-deletions\"%'"),
        5
    );
    // Released: the next pass holds nothing.
    assert_success(&env.run(&["sync"]));
    assert!(last_run(&env).starts_with("succeeded"));
}

#[test]
fn reconciliation_goes_through_the_guard() {
    let env = guarded("2");
    {
        let mut t = env.sim.tenant();
        for n in 1..=3 {
            t.soft_delete_user(&u(n));
        }
    }
    // A full pass from scratch does not see them: reconciliation would mark them deleted.
    let out = env.run(&["sync", "--full"]);
    assert_held(&out, "3 users marked deleted");
    assert_eq!(live_users(&env), 8);
    assert_eq!(env.team().len(), 6);
    // Their links, which the member lists leave out, are not re-read while the users'
    // reconciliation is held: that would drop them, and the users are only soft-deleted.
    let links = format!(
        "SELECT count(*) FROM group_members WHERE group_id = '{}'",
        g(1)
    );
    assert_eq!(env.count(&links), 6);

    assert_success(&env.run(&["sync", "--full", "--allow-deletions"]));
    assert_eq!(live_users(&env), 5);
    assert_eq!(env.count(&links), 6);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE action = 'deleted' AND detail LIKE '%not reported by a full pass%'"),
        3
    );
}

#[test]
fn a_mapping_typo_never_empties_the_team() {
    let env = guarded("\"50%\"");
    env.write_config_with(r#"groups = ["Enginering"]"#, "max_deletions = \"50%\"");
    let out = env.run(&["sync"]);
    assert_held(&out, "6 members removed from the team");
    assert_eq!(env.team().len(), 6);
    // The typo fixed (and a group added): nothing to remove, the hold goes.
    env.write_config_with(
        r#"groups = ["Engineering", "Marketing"]"#,
        "max_deletions = \"50%\"",
    );
    assert_success(&env.run(&["sync"]));
    assert_eq!(env.team().len(), 8);
}

#[test]
fn approve_deletions_releases_the_hold_of_a_running_service() {
    let env = guarded("2");
    // A long interval: only approve-deletions' signal can start the next pass soon.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"1h\"");
    std::fs::write(&env.config, text).unwrap();
    for n in 1..=3 {
        env.sim.tenant().soft_delete_user(&u(n));
    }
    let mut daemon = env.spawn(&["run"]);
    wait_for("the held pass", Duration::from_secs(30), || {
        env.count("SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error LIKE 'deletion guard: held 3 users%'") >= 1
    });
    assert_eq!(live_users(&env), 8);

    let out = env.run(&["approve-deletions"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("the running service (pid"),
        "{}",
        stdout(&out)
    );
    // The team is recomputed after the pass's rounds commit: wait for both.
    wait_for("the approved pass", Duration::from_secs(30), || {
        live_users(&env) == 5 && env.team().len() == 3
    });
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE action = 'deleted' AND detail LIKE '%\"approved\":\"approve-deletions\"%'"),
        3
    );
    // Used once: gone from the database, its use recorded.
    assert_eq!(
        env.count("SELECT count(*) FROM meta WHERE key = 'deletions_approved'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM meta WHERE key = 'deletions_approval_used'"),
        1
    );
    let _ = daemon.kill();
    let _ = daemon.wait();

    // Nothing held now: nothing to approve.
    let out = env.run(&["approve-deletions"]);
    assert_success(&out);
    assert!(stdout(&out).contains("holds nothing"), "{}", stdout(&out));
}

/// The held pass of a service shows on its systemd STATUS line (what `systemctl status`
/// prints), starting with what was held, and `status` says the same.
#[test]
fn a_held_pass_shows_on_the_systemd_status_line() {
    use std::os::unix::net::UnixDatagram;
    let env = guarded("2");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"1h\"");
    std::fs::write(&env.config, text).unwrap();
    for n in 1..=3 {
        env.sim.tenant().soft_delete_user(&u(n));
    }
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut daemon = env
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let held = loop {
        let mut buffer = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if let Some(line) = message
                .lines()
                .find(|l| l.starts_with("STATUS=") && l.contains("error: deletion guard"))
            {
                break line.to_owned();
            }
            messages.push(message);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no STATUS line with the guard's error; got {messages:?}"
        );
    };
    assert!(
        held.contains("last pass failed at ")
            && held.contains("error: deletion guard: held 3 users marked deleted"),
        "{held}"
    );
    let out = env.run(&["status"]);
    assert!(
        stdout(&out).contains("deletion guard: held 3 users marked deleted"),
        "{}",
        stdout(&out)
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
