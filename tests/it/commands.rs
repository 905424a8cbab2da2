//! The command line: exit codes, `check`, `status`, config errors, `enabled = false`.

use crate::sim::{MemberKind, Resource};
use crate::support::*;

#[test]
fn config_errors_exit_78_with_key_and_line() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("client_id = \"{}\"", crate::sim::CLIENT_ID),
        "client_id = \"not-a-guid\"",
    );
    std::fs::write(&env.config, text).unwrap();
    for command in ["sync", "check", "status"] {
        let out = env.run(&[command]);
        assert_eq!(out.status.code(), Some(78), "{command}");
        let err = stderr(&out);
        assert!(err.contains("entra.client_id"), "{err}");
        assert!(
            err.contains(&format!("{}:3", env.config.display())),
            "{err}"
        );
    }
    assert!(env.sim.requests().is_empty());
}

#[test]
fn disabled_sync_makes_no_requests() {
    let env = TestEnv::new();
    env.write_config_with("groups = []", "enabled = false");
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("sync.enabled = false"),
        "{}",
        stderr(&out)
    );
    assert!(env.sim.requests().is_empty());
}

#[test]
fn check_reports_each_step() {
    let env = TestEnv::with_mapping(r#"groups = ["Engineering", "Nope"]"#);
    {
        let mut t = env.sim.tenant();
        t.add_user(&u(1), user_props("Ada"));
        t.add_group(&g(1), security_group("Engineering"));
        t.add_member(&g(1), &u(1), MemberKind::User);
    }
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("ok    config"), "{text}");
    assert!(text.contains("ok    sign-in"), "{text}");
    assert!(text.contains("ok    users"), "{text}");
    assert!(text.contains("ok    groups"), "{text}");
    assert!(
        text.contains(&format!(
            "ok    mapping: \"Engineering\" is Engineering ({})",
            g(1)
        )),
        "{text}"
    );
    assert!(
        text.contains("FAIL  mapping: \"Nope\" matches no group"),
        "{text}"
    );

    env.sim.settings().consent_users = false;
    let text = stdout(&env.run(&["check"]));
    assert!(
        text.contains("FAIL  users") && text.contains("User.Read.All"),
        "{text}"
    );
    assert!(text.contains("ok    groups"), "{text}");
    // check reads, it never writes the database.
    assert!(!env.db.exists());
    assert!(
        env.graph_requests(Resource::Users)
            .iter()
            .all(|r| !r.path_and_query.contains("deltatoken"))
    );
}

#[test]
fn status_shows_runs_counts_and_links() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        t.add_user(&u(1), user_props("Ada"));
        t.add_user(&u(2), user_props("Bo"));
        t.add_group(&g(1), security_group("Engineering"));
        t.add_member(&g(1), &u(1), MemberKind::User);
    }
    let out = env.run(&["status"]);
    assert_success(&out);
    assert!(stdout(&out).contains("no database yet"), "{}", stdout(&out));
    env.sync();
    let out = env.run(&["status", "--json"]);
    assert_success(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["contents"]["users"], 2);
    assert_eq!(status["contents"]["team_members"], 1);
    assert_eq!(status["runs"][0]["status"], "succeeded");
    assert_eq!(status["runs"][0]["kind"], "full");
    assert_eq!(status["enabled"], true);
    assert!(
        status["resources"][0]["delta_link_age_seconds"]
            .as_i64()
            .unwrap()
            < 60
    );
    let text = stdout(&env.run(&["status"]));
    assert!(
        text.contains("2 users (0 deleted), 1 groups (0 deleted), 1 memberships"),
        "{text}"
    );
    assert!(
        text.contains("\"Microsoft Entra ID Users\": 1 members"),
        "{text}"
    );
}

#[test]
fn a_second_writer_is_refused() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        for n in 1..=20 {
            t.add_user(&u(n), user_props(&format!("U{n}")));
        }
        let mut s = env.sim.settings();
        s.users_page_size = 2;
        s.page_latency = std::time::Duration::from_millis(200);
    }
    let first = env.spawn(&["sync"]);
    wait_for(
        "the first pass to start",
        std::time::Duration::from_secs(20),
        || !env.graph_requests(Resource::Users).is_empty(),
    );
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in use by another entra-sync process (pid"),
        "{}",
        stderr(&out)
    );
    assert_success(&first.wait_with_output().unwrap());
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A small tenant: one user in Engineering.
fn small_tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    t.add_user(&u(1), user_props("Ada"));
    t.add_group(&g(1), security_group("Engineering"));
    t.add_member(&g(1), &u(1), MemberKind::User);
}

/// Issue 7.15: the state directory is created 0700 (the lock file beside the database used
/// to create it 0755 first), and the database 0600.
#[test]
fn the_state_directory_is_created_private() {
    let mut env = TestEnv::new();
    small_tenant(&env);
    env.db = env.dir.path().join("state/entra-sync/entra-sync.db");
    env.write_config(r#"groups = ["Engineering"]"#);
    env.sync();
    assert_eq!(mode(&env.dir.path().join("state")), 0o700);
    assert_eq!(mode(&env.dir.path().join("state/entra-sync")), 0o700);
    assert_eq!(mode(&env.db), 0o600);
}

/// Issue 7.15: a dangling symlink at the database path is refused with a message; SQLite
/// would have created its target with the umask's mode (0644).
#[test]
fn a_symlink_at_the_database_path_is_refused() {
    let env = TestEnv::new();
    small_tenant(&env);
    let target = env.dir.path().join("elsewhere.db");
    std::os::unix::fs::symlink(&target, &env.db).unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is a symbolic link") && err.contains("point sync.database at the real file"),
        "{err}"
    );
    assert!(!target.exists(), "the link was followed");
    assert!(env.sim.requests().is_empty());
}

/// Issue 7.15: an existing database that others could write is refused at start, with the
/// chmod that fixes it.
#[test]
fn a_database_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    small_tenant(&env);
    env.sync();
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o646)).unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has mode 0646") && err.contains(&format!("chmod go-w {}", env.db.display())),
        "{err}"
    );
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.sync();
}

/// Overwrites the start of every page after the first (SQLite's 4 KiB pages, where each
/// b-tree page keeps its header) with garbage, as a failing disk would; the file header
/// stays intact, so the file still opens.
pub fn damage(db: &std::path::Path) {
    let mut bytes = std::fs::read(db).unwrap();
    for start in (4096..bytes.len()).step_by(4096) {
        bytes[start..start + 16].fill(0xA5);
    }
    std::fs::write(db, bytes).unwrap();
}

/// Issue 7.16: a damaged database stops `sync` and `run` with exit status 65 and a message
/// that says how to recover, instead of failing every pass forever.
#[test]
fn a_damaged_database_stops_with_exit_65_and_the_way_to_recover() {
    let env = TestEnv::new();
    small_tenant(&env);
    env.sync();
    damage(&env.db);
    for command in ["sync", "run"] {
        let out = env.run(&[command]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(65), "{command}: {err}");
        assert!(
            err.contains("is damaged")
                && err.contains(&format!(
                    "mv {} {}.damaged",
                    env.db.display(),
                    env.db.display()
                ))
                && err.contains("restore a backup"),
            "{command}: {err}"
        );
    }
    // The way out works: moved aside, the next pass rebuilds the data.
    std::fs::rename(&env.db, env.dir.path().join("entra-sync.db.damaged")).unwrap();
    env.sync();
    assert_eq!(env.team(), vec![u(1)]);
}
