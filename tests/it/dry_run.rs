//! `sync --dry-run`: prints what a pass would change, writes nothing, needs no lock, and the
//! next real pass applies exactly what it printed.

use serde_json::{Value, json};

use crate::sim::MemberKind;
use crate::support::*;

/// Every row of every table, as text, table by table.
fn dump(env: &TestEnv) -> Vec<String> {
    let conn = env.db();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = statement.column_count();
        let mut table_rows: Vec<String> = statement
            .query_map([], |r| {
                let values: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(format!("{table}: {}", values.join(" | ")))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        table_rows.sort();
        rows.extend(table_rows);
    }
    rows
}

fn tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for n in 1..=4 {
        t.add_user(&u(n), user_props(&format!("User {n}")));
    }
    t.add_group(&g(1), security_group("Engineering"));
    for n in 1..=3 {
        t.add_member(&g(1), &u(n), MemberKind::User);
    }
}

#[test]
fn a_dry_run_writes_nothing_and_the_next_pass_applies_what_it_printed() {
    let env = TestEnv::new();
    tenant(&env);
    env.sync();
    {
        let mut t = env.sim.tenant();
        t.update_user(&u(1), json!({"displayName": "Ada Renamed"}));
        t.soft_delete_user(&u(2));
        t.add_user(&u(9), user_props("New User"));
        t.add_member(&g(1), &u(9), MemberKind::User);
        t.remove_member(&g(1), &u(3));
    }
    let before = dump(&env);
    let bytes_before = std::fs::read(&env.db).unwrap();

    // No write lock needed: it works while another process holds the database.
    let lock = entra_sync::lock::acquire(&env.db).unwrap();
    let text = env.run(&["sync", "--dry-run"]);
    assert_success(&text);
    let json_out = env.run(&["sync", "--dry-run", "--json"]);
    assert_success(&json_out);
    drop(lock);
    assert_eq!(dump(&env), before, "a dry run changed the database");
    assert_eq!(std::fs::read(&env.db).unwrap(), bytes_before);

    let printed = stdout(&text);
    let mut lines = printed.lines();
    let summary = lines.next().unwrap();
    assert!(
        summary.starts_with("dry run (incremental), nothing written: users +1 ~1 -1"),
        "{printed}"
    );
    for expected in [
        format!("user created {} \"New User\"", u(9)),
        format!(
            "user updated {} \"Ada Renamed\" displayName: \"User 1\" -> \"Ada Renamed\"",
            u(1)
        ),
        format!("user deleted {} \"User 2\" (soft)", u(2)),
        format!(
            "membership added {} \"New User\" (user) group {}",
            u(9),
            g(1)
        ),
        format!(
            "membership removed {} \"User 3\" (user) group {}",
            u(3),
            g(1)
        ),
        format!("team added {} \"New User\" team", u(9)),
    ] {
        assert!(
            printed.lines().any(|l| l.starts_with(&expected)),
            "missing {expected:?} in:\n{printed}"
        );
    }

    // The real pass: its audit is exactly the printed plan, change for change.
    let planned: Vec<Value> = stdout(&json_out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(planned.len() >= 7, "{planned:?}");
    env.sync();
    let applied: Vec<Value> = env
        .strings(
            "SELECT json_object('entity', entity, 'action', action, 'id', entity_id, 'detail', json(detail))
             FROM audit_events WHERE run_id = (SELECT max(id) FROM sync_runs) ORDER BY id",
        )
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let strip = |v: &Value| json!({"entity": v["entity"], "action": v["action"], "id": v["id"], "detail": v["detail"]});
    // The two rounds run side by side, so only the order between them may differ.
    let sorted = |events: &[Value]| {
        let mut v: Vec<String> = events.iter().map(|e| strip(e).to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&planned), sorted(&applied));
}

#[test]
fn a_dry_run_prints_at_most_a_hundred_lines_per_kind() {
    let env = TestEnv::new();
    tenant(&env);
    env.sync();
    {
        let mut t = env.sim.tenant();
        for n in 100..205 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
    }
    let out = env.run(&["sync", "--dry-run", "--full"]);
    assert_success(&out);
    let printed = stdout(&out);
    assert!(
        printed.starts_with("dry run (full), nothing written: users +105"),
        "{printed}"
    );
    assert_eq!(
        printed
            .lines()
            .filter(|l| l.starts_with("user created "))
            .count(),
        100
    );
    assert!(
        printed.contains("\n... and 5 more user created\n"),
        "{printed}"
    );
    // --json prints every one.
    let out = env.run(&["sync", "--dry-run", "--full", "--json"]);
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains(r#""action":"created""#))
            .count(),
        105
    );
    // Nothing was written: the database still has the four users.
    assert_eq!(env.count("SELECT count(*) FROM users"), 4);
}

#[test]
fn a_dry_run_of_a_first_import_shows_its_baseline() {
    let env = TestEnv::new();
    tenant(&env);
    let out = env.run(&["sync", "--dry-run"]);
    assert_success(&out);
    let printed = stdout(&out);
    let baseline = format!(
        "membership added {} \"Engineering\" (3 members, the first import's baseline)",
        g(1)
    );
    assert!(printed.lines().any(|l| l == baseline), "{printed}");
    assert!(
        !printed.contains("(user) group"),
        "no line per link: {printed}"
    );
}
