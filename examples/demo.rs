//! A demonstration on a simulated tenant: `cargo run --example demo`.
//!
//! Starts the project's Graph simulator on 127.0.0.1 with a small tenant, writes a config in
//! `./demo/`, runs a full pass and (after some changes in the tenant) an incremental pass with
//! the same code as `entra-sync sync`, then shows what landed in `demo/entra-sync.db`.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a demo prints, and fails loudly

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/sim/mod.rs"]
mod sim;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use entra_sync::cli::{Cli, Command};
use serde_json::json;
use sim::{MemberKind, Sim};

const PEOPLE: &[(&str, &str, &str)] = &[
    ("Ada Lind", "Engineering", "Staff Engineer"),
    ("Bo Ek", "Engineering", "Engineer"),
    ("Cy Holm", "Engineering", "Engineer"),
    ("Di Berg", "Engineering", "Engineering Manager"),
    ("Eli Novak", "Engineering", "Engineer"),
    ("Fay Chen", "Sales", "Account Executive"),
    ("Gus Silva", "Sales", "Sales Director"),
    ("Hana Okafor", "Finance", "Controller"),
    ("Ivo Rossi", "Finance", "Analyst"),
    ("Jun Kaur", "Engineering", "Engineer (contractor)"),
];

fn main() {
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .format_timestamp(None)
        .init();
    let dir = Path::new("demo");
    std::fs::create_dir_all(dir).unwrap();
    let db = dir.join("entra-sync.db");
    for stale in ["entra-sync.db", "entra-sync.db-wal", "entra-sync.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }

    let sim = Sim::start();
    build_tenant(&sim);
    let config = write_config(dir, &sim);

    println!(
        "\n== 1. Full pass against a simulated tenant at {}",
        sim.url()
    );
    sync(&config);
    show(&db);

    println!(
        "\n== 2. Changes in Entra: a rename, a disabled account, a new member, a deleted user"
    );
    {
        let mut t = sim.tenant();
        t.update_user(
            &id('u', 2),
            json!({"displayName": "Bo Ek-Lind", "jobTitle": "Senior Engineer"}),
        );
        t.update_user(&id('u', 5), json!({"accountEnabled": false}));
        t.add_member(&id('g', 2), &id('u', 8), MemberKind::User);
        t.soft_delete_user(&id('u', 3));
    }
    println!("\n== 3. Incremental pass (from the stored delta links)");
    sync(&config);
    show(&db);

    println!("\n== Try it yourself");
    println!("   cargo run -- --config demo/config.toml status");
    println!(
        "   sqlite3 -readonly demo/entra-sync.db \"SELECT a.at, a.entity, a.action, u.display_name, a.detail \
         FROM audit_events a LEFT JOIN users u ON u.id = a.entity_id ORDER BY a.id DESC LIMIT 10\""
    );
    println!("   The schema and more queries: SCHEMA.md");
}

fn id(kind: char, n: u32) -> String {
    let tag = if kind == 'u' { "0a1b2c3d" } else { "9f000000" };
    format!("{tag}-0000-4000-8000-{n:012x}")
}

/// Ten people; Engineering (security group) with a nested Backend group; Sales (Microsoft 365).
fn build_tenant(sim: &Sim) {
    let mut t = sim.tenant();
    for (i, (name, department, title)) in PEOPLE.iter().enumerate() {
        let local = name.to_lowercase().replace(' ', ".");
        t.add_user(
            &id('u', i as u32 + 1),
            json!({
                "displayName": name, "userPrincipalName": format!("{local}@contoso.example"),
                "mail": format!("{local}@contoso.example"), "givenName": name.split(' ').next(),
                "surname": name.split(' ').nth(1), "accountEnabled": true,
                "userType": if title.contains("contractor") { "Guest" } else { "Member" },
                "jobTitle": title, "department": department,
            }),
        );
    }
    t.add_group(&id('g', 1), json!({"displayName": "Engineering", "securityEnabled": true, "mailEnabled": false, "groupTypes": []}));
    t.add_group(&id('g', 2), json!({"displayName": "Backend", "securityEnabled": true, "mailEnabled": false, "groupTypes": []}));
    t.add_group(&id('g', 3), json!({"displayName": "Sales", "securityEnabled": false, "mailEnabled": true, "mail": "sales@contoso.example", "groupTypes": ["Unified"]}));
    for n in [1, 4] {
        t.add_member(&id('g', 1), &id('u', n), MemberKind::User);
    }
    t.add_member(&id('g', 1), &id('g', 2), MemberKind::Group);
    for n in [2, 3, 5, 10] {
        t.add_member(&id('g', 2), &id('u', n), MemberKind::User);
    }
    for n in [6, 7] {
        t.add_member(&id('g', 3), &id('u', n), MemberKind::User);
    }
}

fn write_config(dir: &Path, sim: &Sim) -> std::path::PathBuf {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{}\n", sim::CLIENT_SECRET)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo run --example demo` for a simulated tenant.\n\
             [entra]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"client-secret\"\n\
             authority_host = \"{url}\"\ngraph_endpoint = \"{url}\"\n\n\
             [sync]\ndatabase = \"entra-sync.db\"\n\n\
             [mapping]\nteam = \"Microsoft Entra ID Users\"\ngroups = [\"Engineering\"]\nnested = true\n",
            sim::TENANT_ID,
            sim::CLIENT_ID,
            url = sim.url()
        ),
    )
    .unwrap();
    config
}

fn sync(config: &Path) {
    let cli = Cli {
        config: Some(config.to_owned()),
        command: Command::Sync {
            full: false,
            dry_run: false,
            json: false,
            allow_deletions: false,
        },
    };
    if let Err(e) = entra_sync::cli::run(cli) {
        println!("sync failed: {e}");
        std::process::exit(1);
    }
}

fn show(db: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    println!(
        "   database: {} users ({} deleted), {} groups, {} memberships",
        count("SELECT count(*) FROM users WHERE deleted_at IS NULL"),
        count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL"),
        count("SELECT count(*) FROM groups WHERE deleted_at IS NULL"),
        count("SELECT count(*) FROM group_members"),
    );
    let mut team = conn
        .prepare(
            "SELECT u.display_name FROM team_members t JOIN users u ON u.id = t.user_id ORDER BY u.display_name",
        )
        .unwrap();
    let names: Vec<String> = team
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    println!(
        "   team \"Microsoft Entra ID Users\" (Engineering, nested): {}",
        names.join(", ")
    );
    let mut audit = conn
        .prepare(
            "SELECT a.entity, a.action, coalesce(u.display_name, g.display_name, a.entity_id), coalesce(a.detail, '')
             FROM audit_events a
             LEFT JOIN users u ON u.id = a.entity_id LEFT JOIN groups g ON g.id = a.entity_id
             WHERE a.run_id = (SELECT max(id) FROM sync_runs) AND a.entity IN ('user', 'team')
             ORDER BY a.id LIMIT 20",
        )
        .unwrap();
    println!("   audit events of this pass (users and team):");
    for row in audit
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .unwrap()
    {
        let (entity, action, who, detail) = row.unwrap();
        println!("     {entity:<5} {action:<8} {who:<14} {detail}");
    }
}
