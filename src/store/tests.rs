//! The store's own tests: migrations, round state, lookups and applying changes.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state/test.db")).unwrap();
    (dir, store)
}

#[test]
fn new_database_is_private_wal_and_current() {
    let (dir, store) = temp_store();
    let path = dir.path().join("state/test.db");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let journal: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let version: i64 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    drop(store);
    // Reopening migrates nothing and keeps the data.
    Store::open(&path).unwrap();
}

/// The first column of every row `sql` returns, as text.
fn column_text(store: &Store, sql: &str) -> Vec<String> {
    let mut statement = store.conn.prepare(sql).unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn version_1_migrates_with_its_memberships_behind_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO groups (id, display_name, attributes, created_at, updated_at)
                 VALUES ('g1', 'Live', '{}', 't', 't');
             INSERT INTO groups (id, display_name, attributes, created_at, updated_at,
                 deleted_at, deletion) VALUES ('g2', 'Gone', '{}', 't', 't', 't', 'soft');
             INSERT INTO group_members (group_id, member_id, member_type, added_at)
                 VALUES ('g1', 'u1', 'user', 't'), ('g2', 'u1', 'user', 't');",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let rows = |sql: &str| column_text(&store, sql);
    assert_eq!(rows("SELECT group_id FROM group_members"), vec!["g1"]);
    assert_eq!(
        rows("SELECT group_id FROM group_members_all ORDER BY 1"),
        vec!["g1", "g2"]
    );
    assert_eq!(rows("SELECT entry FROM mapping_pins"), Vec::<String>::new());
}

#[test]
fn version_8_keeps_every_row_of_users_and_groups_in_rowid_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v8.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..8] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 8;
             INSERT INTO users (id, user_principal_name, display_name, mail, account_enabled,
                 user_type, attributes, created_at, updated_at, deleted_at, deletion,
                 seen_generation)
                 VALUES ('u1', 'ada@x', 'Ada', 'ada@x', 1, 'Member', '{\"a\":1}', 't1', 't2',
                     NULL, NULL, 3),
                        ('u2', 'bob@x', 'Bob', NULL, 0, 'Guest', '{}', 't1', 't3', 't3',
                     'soft', 2);
             INSERT INTO groups (id, display_name, attributes, created_at, updated_at)
                 VALUES ('g1', 'Live', '{}', 't', 't');
             INSERT INTO groups (id, display_name, attributes, created_at, updated_at,
                 deleted_at, deletion) VALUES ('g2', 'Gone', '{}', 't', 't', 't', 'soft');
             INSERT INTO object_keys (key, id) VALUES (1, 'g1'), (2, 'g2'), (3, 'u1');
             INSERT INTO memberships (group_key, member_key, member_type, added_at)
                 VALUES (1, 3, 'user', 0), (2, 3, 'user', 0);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let text = |sql: &str| column_text(&store, sql);
    assert_eq!(
        text(
            "SELECT id || '|' || user_principal_name || '|' || display_name || '|' ||
                 coalesce(mail, '-') || '|' || account_enabled || '|' || user_type || '|' ||
                 attributes || '|' || created_at || '|' || updated_at || '|' ||
                 coalesce(deleted_at, '-') || '|' || coalesce(deletion, '-') || '|' ||
                 seen_generation
             FROM users ORDER BY id"
        ),
        vec![
            r#"u1|ada@x|Ada|ada@x|1|Member|{"a":1}|t1|t2|-|-|3"#,
            "u2|bob@x|Bob|-|0|Guest|{}|t1|t3|t3|soft|2",
        ]
    );
    // The view over groups is back, and hides the soft-deleted group's members.
    assert_eq!(text("SELECT group_id FROM group_members"), vec!["g1"]);
    // Rowid tables, with the id still the primary key and the team's index rebuilt.
    assert_eq!(
        text(
            "SELECT name FROM sqlite_schema
             WHERE name IN ('users', 'groups') AND sql NOT LIKE '%WITHOUT ROWID%' ORDER BY 1"
        ),
        vec!["groups", "users"]
    );
    assert_eq!(
        text(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'users' AND type = 'index' ORDER BY 1"
        ),
        vec!["sqlite_autoindex_users_1", "users_team"]
    );
    let duplicate = store.conn.execute(
        "INSERT INTO users (id, attributes, created_at, updated_at) VALUES ('u1', '{}', 't', 't')",
        [],
    );
    assert!(duplicate.is_err(), "the id stays unique");
    let bad_deletion = store
        .conn
        .execute("UPDATE groups SET deletion = 'maybe' WHERE id = 'g1'", []);
    assert!(bad_deletion.is_err(), "the CHECK on deletion stays");
}

#[test]
fn explain_reads_work_on_an_empty_database() {
    let (_dir, store) = temp_store();
    // Fails to prepare if the partial index can't serve it (INDEXED BY).
    assert!(store.nested_groups("g").unwrap().is_empty());
    assert!(store.audit_trail("u", 10).unwrap().is_empty());
}

#[test]
fn newer_schema_is_refused() {
    let (dir, store) = temp_store();
    store
        .conn
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(store);
    let err = Store::open(&dir.path().join("state/test.db"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("newer than this entra-sync understands"),
        "{err}"
    );
}

/// A time for the rows that store it as Unix seconds.
const T: &str = "2026-01-01T00:00:00Z";

/// Applied as any round but a baseline: audited per row.
fn per_row(run: i64, generation: i64, now: &str) -> Stamp<'_> {
    Stamp {
        run,
        generation,
        now,
        baseline: false,
    }
}

fn link(group: &str, member: &str) -> Change {
    Change::AddMember {
        group: group.into(),
        member: member.into(),
        member_type: "user".into(),
    }
}

#[test]
fn objects_round_trip_with_typed_columns() {
    let (_dir, mut store) = temp_store();
    let run = store.begin_run("full", "t").unwrap();
    let tx = store.transaction().unwrap();
    let attrs: Map<String, Value> = serde_json::from_str(
        r#"{"displayName":"Ada","userPrincipalName":"ada@x","accountEnabled":false,"mail":null}"#,
    )
    .unwrap();
    let changes = [
        Change::Create {
            kind: Kind::User,
            id: "u1".into(),
            attributes: attrs.clone().into(),
        },
        Change::Delete {
            kind: Kind::User,
            id: "u1".into(),
            name: None,
            removal: Removal::Soft,
            reason: Reason::Removed,
            was_live: true,
        },
    ];
    tx.apply(&changes[..1], &per_row(run, 1, "2026-01-01T00:00:00Z"))
        .unwrap();
    tx.apply(&changes[1..], &per_row(run, 1, "2026-01-02T00:00:00Z"))
        .unwrap();
    let wanted = Wanted {
        objects: vec!["u1", "u2"],
        ..Wanted::default()
    };
    let found = tx.lookup(Kind::User, &wanted).unwrap();
    assert_eq!(found.objects.len(), 1);
    let stored = &found.objects["u1"];
    assert_eq!(stored.attributes, attrs.into());
    assert_eq!(stored.deletion, Some(Removal::Soft));
    assert_eq!(stored.seen_generation, 1);
    tx.commit().unwrap();
    let row: (String, i64, Option<String>, String) = store
        .conn
        .query_row(
            "SELECT user_principal_name, account_enabled, mail, deleted_at FROM users WHERE id='u1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        ("ada@x".into(), 0, None, "2026-01-02T00:00:00Z".into())
    );
    let audited: Vec<String> = store
        .conn
        .prepare("SELECT action || ' ' || coalesce(detail, '') FROM audit_events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(audited, ["created ", r#"deleted {"deletion":"soft"}"#]);
}

#[test]
fn dropped_transaction_rolls_back() {
    let (_dir, mut store) = temp_store();
    let run = store.begin_run("full", "t").unwrap();
    {
        let tx = store.transaction().unwrap();
        tx.apply(&[link("g", "u")], &per_row(run, 1, T)).unwrap();
    }
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM group_members_all", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn memberships_are_looked_up_by_pair_and_unseen_by_generation() {
    let (_dir, mut store) = temp_store();
    let run = store.begin_run("full", "t").unwrap();
    let tx = store.transaction().unwrap();
    tx.apply(
        &[link("g", "u1"), link("g", "u2"), link("h", "u1")],
        &per_row(run, 1, T),
    )
    .unwrap();
    let stamp = Change::SeenMember {
        group: "g".into(),
        member: "u1".into(),
        member_type: "group".into(),
    };
    let group = |id: &str| Change::Create {
        kind: Kind::Group,
        id: id.into(),
        attributes: Props::new(),
    };
    tx.apply(&[group("g"), group("h"), stamp], &per_row(run, 2, T))
        .unwrap();
    let wanted = Wanted {
        objects: vec!["g"],
        links: vec![("g", vec!["u1", "u3"])],
        purged: vec!["u2"],
        ..Wanted::default()
    };
    let found = tx.lookup(Kind::Group, &wanted).unwrap();
    let pairs: Vec<_> = found.links.iter().collect();
    assert_eq!(
        pairs,
        [(
            &("g".to_owned(), "u1".to_owned()),
            &KnownLink {
                member_type: "group".into(),
                seen_generation: 2
            }
        )]
    );
    // A purge is looked up only for ids the store holds (u2 is no object here).
    assert!(found.purged_links.is_empty());
    // Nor are the memberships of a group the store does not hold (a first import's),
    // whatever rows name it.
    tx.apply(&[link("x", "u1")], &per_row(run, 2, T)).unwrap();
    let new_group = Wanted {
        objects: vec!["x"],
        links: vec![("x", vec!["u1"])],
        ..Wanted::default()
    };
    assert!(tx.lookup(Kind::Group, &new_group).unwrap().links.is_empty());
    let unseen = tx.unseen(Kind::Group, 2).unwrap();
    assert_eq!(
        unseen.links,
        [
            ("g".to_owned(), "u2".to_owned(), "user".to_owned()),
            ("h".to_owned(), "u1".to_owned(), "user".to_owned())
        ]
    );
    assert!(tx.remove_member("g", "u1").unwrap());
    assert!(!tx.remove_member("g", "u1").unwrap());
    tx.commit().unwrap();
}

#[test]
fn a_baseline_audits_memberships_per_group_and_later_rounds_per_row() {
    let (_dir, mut store) = temp_store();
    let run = store.begin_run("full", "t").unwrap();
    let tx = store.transaction().unwrap();
    let state = tx.start_full_round(Resource::Groups, "q", "t").unwrap();
    assert!(state.baseline, "an empty groups table starts a baseline");
    let baseline = Stamp {
        baseline: true,
        ..per_row(run, state.generation, T)
    };
    let group = |id: &str| Change::Create {
        kind: Kind::Group,
        id: id.into(),
        attributes: Props::new(),
    };
    let gone = Change::RemoveMember {
        group: "g".into(),
        member: "u3".into(),
        member_type: "user".into(),
        reason: Reason::Removed,
    };
    let changes = [
        group("g"),
        group("h"),
        link("g", "u1"),
        link("g", "u2"),
        link("g", "u3"),
        gone,
        link("h", "u1"),
    ];
    tx.apply(&changes, &baseline).unwrap();
    assert_eq!(tx.audit_baseline(run, "t").unwrap(), 2);
    tx.set_delta_link(Resource::Groups, "delta", "q", "t")
        .unwrap();
    assert!(!tx.sync_state(Resource::Groups).unwrap().baseline);
    // A later full round (a lost delta state) is no baseline: the table holds groups.
    let state = tx.start_full_round(Resource::Groups, "q", "t").unwrap();
    assert!(!state.baseline);
    tx.apply(&[link("h", "u2")], &per_row(run, state.generation, T))
        .unwrap();
    tx.commit().unwrap();
    let audited: Vec<String> = store
        .conn
        .prepare(
            "SELECT entity || ' ' || entity_id || ' ' || action || ' ' || coalesce(detail, '')
             FROM audit_events ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        audited,
        [
            "group g created ",
            "group h created ",
            r#"membership g added {"group":"g","members":2,"baseline":true}"#,
            r#"membership h added {"group":"h","members":1,"baseline":true}"#,
            r#"membership u2 added {"group":"h","type":"user"}"#,
        ]
    );
}

#[test]
fn full_round_state_moves_generation_and_clears_links() {
    let (_dir, store) = temp_store();
    let tx = store.transaction().unwrap();
    let first = tx.start_full_round(Resource::Users, "q", "t").unwrap();
    assert_eq!((first.generation, first.baseline), (1, true));
    tx.set_resume_link(Resource::Users, "next", true, "t")
        .unwrap();
    tx.set_delta_link(Resource::Users, "delta", "q", "t2")
        .unwrap();
    let state = tx.sync_state(Resource::Users).unwrap();
    assert_eq!(state.delta_link.as_deref(), Some("delta"));
    assert_eq!(state.resume_link, None);
    // Still no user stored: a first import that did not finish goes on as a baseline.
    let again = tx.start_full_round(Resource::Users, "q", "t").unwrap();
    assert_eq!((again.generation, again.baseline), (2, true));
    assert_eq!(tx.sync_state(Resource::Users).unwrap().delta_link, None);
    tx.commit().unwrap();
}

/// A full round by delta chain, begun while a snapshot was under way (the config switched to
/// `full_pass = "delta"`), drops that snapshot: switched back, it must not resume with a
/// stale catch-up link and an old generation.
#[test]
fn a_new_full_round_drops_an_earlier_snapshot() {
    let (_dir, store) = temp_store();
    let tx = store.transaction().unwrap();
    tx.begin_snapshot(Resource::Groups, "catch-up", "q", &["all"], "t")
        .unwrap();
    tx.queue_groups(&["g1"], Purpose::Snapshot).unwrap();
    tx.queue_groups(&["g2"], Purpose::Recheck).unwrap();
    tx.commit().unwrap();
    assert!(store.snapshot_state(Resource::Groups).unwrap().is_some());

    let tx = store.transaction().unwrap();
    tx.start_full_round(Resource::Groups, "q", "t").unwrap();
    tx.commit().unwrap();
    assert_eq!(store.snapshot_state(Resource::Groups).unwrap(), None);
    assert!(store.snapshot_chains(Resource::Groups).unwrap().is_empty());
    assert!(store.snapshot_groups(Purpose::Snapshot).unwrap().is_empty());
    let recheck = store.snapshot_groups(Purpose::Recheck).unwrap();
    assert_eq!(
        recheck,
        [("g2".to_owned(), None)],
        "a pending re-read stays"
    );
}

#[test]
fn schema_md_names_the_version_this_build_writes() {
    let schema = include_str!("../../SCHEMA.md");
    assert!(
        schema.contains(&format!("(currently **{SCHEMA_VERSION}**)")),
        "SCHEMA.md names another schema version than {SCHEMA_VERSION}"
    );
}
