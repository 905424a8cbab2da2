//! What a pass stores: full and incremental rounds, merges, deletes, memberships, the team.

use serde_json::json;

use crate::sim::{MemberKind, Resource};
use crate::support::*;

/// A small tenant: five users, Engineering (security) with three of them, Marketing
/// (Microsoft 365) with two.
fn small_tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for (n, name) in [
        (1, "Ada Lind"),
        (2, "Bo Ek"),
        (3, "Cy Holm"),
        (4, "Di Berg"),
        (5, "Ed Fors"),
    ] {
        t.add_user(&u(n), user_props(name));
    }
    t.add_group(&g(1), security_group("Engineering"));
    t.add_group(&g(2), unified_group("Marketing"));
    for n in [1, 2, 3] {
        t.add_member(&g(1), &u(n), MemberKind::User);
    }
    for n in [4, 5] {
        t.add_member(&g(2), &u(n), MemberKind::User);
    }
}

#[test]
fn full_then_incremental_pass() {
    let env = TestEnv::new();
    small_tenant(&env);
    let out = env.sync();
    assert!(stdout(&out).contains("(full)"), "{}", stdout(&out));
    assert_eq!(
        env.count("SELECT count(*) FROM users WHERE deleted_at IS NULL"),
        5
    );
    assert_eq!(env.count("SELECT count(*) FROM groups"), 2);
    assert_eq!(env.memberships().len(), 5);
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);
    assert_eq!(
        env.strings(
            "SELECT display_name FROM users WHERE id = '00000000-0000-4000-8000-000000000001'"
        ),
        vec!["Ada Lind"]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'user' AND action = 'created'"),
        5
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'team' AND action = 'added'"),
        3
    );

    // A change, then an incremental pass that starts from the stored delta links.
    env.sim
        .tenant()
        .update_user(&u(4), json!({"displayName": "Di Berg-Holm"}));
    env.sim.tenant().add_member(&g(1), &u(4), MemberKind::User);
    env.sim.clear_requests();
    let out = env.sync();
    assert!(stdout(&out).contains("(incremental)"), "{}", stdout(&out));
    for resource in [Resource::Users, Resource::Groups] {
        let requests = env.graph_requests(resource);
        assert!(!requests.is_empty());
        assert!(
            requests[0].path_and_query.contains("deltatoken="),
            "incremental round must start from the delta link: {}",
            requests[0].path_and_query
        );
    }
    assert_eq!(env.team(), vec![u(1), u(2), u(3), u(4)]);
    assert_eq!(
        env.strings("SELECT detail FROM audit_events WHERE entity = 'user' AND action = 'updated'"),
        vec![r#"{"displayName":{"new":"Di Berg-Holm","old":"Di Berg"}}"#]
    );
    assert_eq!(
        env.strings("SELECT kind || ' ' || status FROM sync_runs ORDER BY id"),
        vec!["full succeeded", "incremental succeeded"]
    );

    // Nothing changed: nothing written but the run row.
    let events = env.count("SELECT count(*) FROM audit_events");
    env.sync();
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), events);
}

#[test]
fn absent_properties_are_kept_and_nulls_clear() {
    let env = TestEnv::new();
    small_tenant(&env);
    env.sync();
    env.sim
        .tenant()
        .update_user(&u(1), json!({"jobTitle": null, "department": "R&D"}));
    env.sync();
    let attributes: serde_json::Value = serde_json::from_str(
        &env.strings(
            "SELECT attributes FROM users WHERE id = '00000000-0000-4000-8000-000000000001'",
        )[0],
    )
    .unwrap();
    assert_eq!(
        attributes["jobTitle"],
        serde_json::Value::Null,
        "{attributes}"
    );
    assert_eq!(attributes["department"], "R&D");
    // Unchanged properties survive whatever the payload carried.
    assert_eq!(attributes["displayName"], "Ada Lind");
    assert_eq!(attributes["mail"], "ada.lind@contoso.example");
    assert_eq!(
        env.strings("SELECT mail FROM users WHERE id = '00000000-0000-4000-8000-000000000001'"),
        vec!["ada.lind@contoso.example"]
    );

    env.sim.tenant().update_user(&u(1), json!({"mail": null}));
    env.sync();
    assert_eq!(
        env.count("SELECT count(*) FROM users WHERE id = '00000000-0000-4000-8000-000000000001' AND mail IS NULL"),
        1
    );
}

#[test]
fn soft_delete_restore_and_permanent_delete() {
    let env = TestEnv::new();
    small_tenant(&env);
    env.sync();

    env.sim.tenant().soft_delete_user(&u(2));
    env.sync();
    let id = u(2);
    assert_eq!(
        env.strings(&format!("SELECT deletion FROM users WHERE id = '{id}'")),
        vec!["soft"]
    );
    // Memberships stay (hidden by the tombstone), the team drops the user.
    assert!(env.memberships().contains(&format!("{} {id} user", g(1))));
    assert_eq!(env.team(), vec![u(1), u(3)]);

    env.sim.tenant().restore_user(&u(2));
    env.sync();
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM users WHERE id = '{id}' AND deleted_at IS NULL"
        )),
        1
    );
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM audit_events WHERE entity_id = '{id}' AND action = 'restored'"
        )),
        1
    );

    env.sim.tenant().soft_delete_user(&u(2));
    env.sim.tenant().purge_user(&u(2));
    env.sync();
    assert_eq!(
        env.strings(&format!("SELECT deletion FROM users WHERE id = '{id}'")),
        vec!["permanent"]
    );
    assert!(!env.memberships().iter().any(|m| m.contains(&id)));
    assert_eq!(env.team(), vec![u(1), u(3)]);
}

#[test]
fn group_deletes_follow_group_kind() {
    let env = TestEnv::with_mapping(r#"groups = ["Engineering", "Marketing"]"#);
    small_tenant(&env);
    env.sync();
    assert_eq!(env.team().len(), 5);

    // A Microsoft 365 group is soft-deleted and comes back with its members.
    env.sim.tenant().delete_group(&g(2));
    env.sync();
    assert_eq!(
        env.strings(&format!(
            "SELECT deletion FROM groups WHERE id = '{}'",
            g(2)
        )),
        vec!["soft"]
    );
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);
    env.sim.tenant().restore_group(&g(2));
    env.sync();
    assert_eq!(env.team().len(), 5);

    // A security group's deletion is permanent and takes its memberships.
    env.sim.tenant().delete_group(&g(1));
    env.sync();
    assert_eq!(
        env.strings(&format!(
            "SELECT deletion FROM groups WHERE id = '{}'",
            g(1)
        )),
        vec!["permanent"]
    );
    assert!(!env.memberships().iter().any(|m| m.starts_with(&g(1))));
    assert_eq!(env.team(), vec![u(4), u(5)]);
}

#[test]
fn membership_changes_split_lists_and_repeats() {
    let env = TestEnv::new();
    // The pages of the delta chain are what this test is about.
    env.delta_chain();
    {
        let mut t = env.sim.tenant();
        for n in 1..=40 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        t.add_group(&g(1), security_group("Engineering"));
        for n in 1..=30 {
            t.add_member(&g(1), &u(n), MemberKind::User);
        }
        t.add_member(
            &g(1),
            "de000000-0000-4000-8000-0000000000d1",
            MemberKind::Device,
        );
        t.add_member(
            &g(1),
            "5e000000-0000-4000-8000-0000000000b1",
            MemberKind::ServicePrincipal,
        );
    }
    {
        let mut s = env.sim.settings();
        s.links_page_size = 7; // the group's members arrive in slices over several pages
        s.users_page_size = 6;
        s.duplicate_every = Some(3); // and objects repeat
        s.empty_page_every = Some(2);
    }
    env.sync();
    assert_eq!(
        env.count("SELECT count(*) FROM group_members WHERE member_type = 'user'"),
        30
    );
    assert_eq!(
        env.count("SELECT count(*) FROM group_members WHERE member_type = 'device'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM group_members WHERE member_type = 'servicePrincipal'"),
        1
    );
    assert_eq!(env.team().len(), 30);
    // A first import is a baseline: one event for the group's 32 members, none per link.
    assert_eq!(
        env.strings(
            "SELECT entity_id || ' ' || detail FROM audit_events WHERE entity = 'membership'"
        ),
        vec![format!(
            r#"{g} {{"group":"{g}","members":32,"baseline":true}}"#,
            g = g(1)
        )]
    );
    assert!(
        env.graph_requests(Resource::Groups).len() >= 5,
        "members were not split over pages"
    );

    {
        let mut t = env.sim.tenant();
        t.remove_member(&g(1), &u(1));
        t.remove_member(&g(1), &u(2));
        t.add_member(&g(1), &u(35), MemberKind::User);
    }
    env.sync();
    // After the baseline, every change is audited per link.
    assert_eq!(
        env.strings(
            "SELECT action || ' ' || entity_id FROM audit_events
             WHERE entity = 'membership' AND detail NOT LIKE '%baseline%' ORDER BY entity_id"
        ),
        vec![
            format!("removed {}", u(1)),
            format!("removed {}", u(2)),
            format!("added {}", u(35))
        ]
    );
    let team = env.team();
    assert_eq!(team.len(), 29);
    assert!(!team.contains(&u(1)) && !team.contains(&u(2)) && team.contains(&u(35)));

    // The same end state as a tenant synced in one go without splits or repeats.
    let fresh = TestEnv::new();
    {
        let mut t = fresh.sim.tenant();
        for n in 1..=40 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        t.add_group(&g(1), security_group("Engineering"));
        for n in (3..=30).chain([35]) {
            t.add_member(&g(1), &u(n), MemberKind::User);
        }
        t.add_member(
            &g(1),
            "de000000-0000-4000-8000-0000000000d1",
            MemberKind::Device,
        );
        t.add_member(
            &g(1),
            "5e000000-0000-4000-8000-0000000000b1",
            MemberKind::ServicePrincipal,
        );
    }
    fresh.sync();
    assert_eq!(env.memberships(), fresh.memberships());
    assert_eq!(env.team(), fresh.team());
}

#[test]
fn nested_groups_and_cycles() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        for n in 1..=4 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        t.add_group(&g(1), security_group("Engineering"));
        t.add_group(&g(2), security_group("Backend"));
        t.add_group(&g(3), security_group("Databases"));
        t.add_member(&g(1), &u(1), MemberKind::User);
        t.add_member(&g(1), &g(2), MemberKind::Group);
        t.add_member(&g(2), &u(2), MemberKind::User);
        t.add_member(&g(2), &g(3), MemberKind::Group);
        t.add_member(&g(3), &u(3), MemberKind::User);
        t.add_member(&g(3), &g(1), MemberKind::Group); // a cycle back to the top
    }
    env.sync();
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);

    env.write_config("groups = [\"Engineering\"]\nnested = false");
    env.sync();
    assert_eq!(env.team(), vec![u(1)]);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'team' AND action = 'removed'"),
        2
    );

    // Mapping by object id, case-insensitive names, and a name that matches nothing.
    env.write_config(&format!(
        "groups = [\"{}\", \"DATABASES\", \"No Such Group\"]\nnested = false",
        g(2)
    ));
    let out = env.sync();
    assert_eq!(env.team(), vec![u(2), u(3)]);
    assert!(
        stderr(&out).contains("\"No Such Group\" matches no group"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ambiguous_group_name_is_reported_and_others_apply() {
    let env = TestEnv::with_mapping(r#"groups = ["Engineering", "Marketing"]"#);
    small_tenant(&env);
    env.sim
        .tenant()
        .add_group(&g(9), security_group("engineering"));
    let out = env.sync();
    let err = stderr(&out);
    assert!(err.contains("\"Engineering\" matches 2 groups"), "{err}");
    assert!(err.contains(&g(9)) && err.contains(&g(1)), "{err}");
    assert_eq!(env.team(), vec![u(4), u(5)]);
}

#[test]
fn disabled_users_leave_the_team_unless_included() {
    let env = TestEnv::new();
    small_tenant(&env);
    env.sim
        .tenant()
        .update_user(&u(3), json!({"accountEnabled": false}));
    env.sync();
    assert_eq!(env.team(), vec![u(1), u(2)]);
    env.write_config("groups = [\"Engineering\"]\ninclude_disabled = true");
    env.sync();
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);
    env.write_config("groups = [\"Engineering\"]");
    env.sim
        .tenant()
        .update_user(&u(3), json!({"accountEnabled": true}));
    env.sim
        .tenant()
        .update_user(&u(1), json!({"accountEnabled": false}));
    env.sync();
    assert_eq!(env.team(), vec![u(2), u(3)]);
}

#[test]
fn team_rename_moves_members() {
    let env = TestEnv::new();
    small_tenant(&env);
    env.sync();
    env.write_config("team = \"Staff\"\ngroups = [\"Engineering\"]");
    env.sync();
    assert_eq!(
        env.strings("SELECT DISTINCT team FROM team_members"),
        vec!["Staff"]
    );
    assert_eq!(env.team().len(), 3);
}

/// Issue 7 item 8: a page that never parses. Each pass fails at once at the same link and
/// keeps it; after three such passes the resource starts over with a full round, and says so.
#[test]
fn a_page_stuck_unusable_for_three_passes_restarts_its_round() {
    use crate::sim::Fault;
    let env = TestEnv::new();
    // The pages of the delta chain are what this test is about.
    env.delta_chain();
    small_tenant(&env);
    env.sync();
    env.sim
        .tenant()
        .update_user(&u(1), json!({"displayName": "Ada Two"}));
    for pass in 1..=3 {
        env.sim.push_fault(Resource::Users, Fault::Malformed);
        env.sim.clear_requests();
        let out = env.run(&["sync"]);
        assert_eq!(out.status.code(), Some(1), "pass {pass}: {}", stderr(&out));
        assert!(!stderr(&out).contains("starting the users round over"));
        let requests = env.graph_requests(Resource::Users);
        assert_eq!(requests.len(), 1, "pass {pass}: asked once, not retried");
        assert!(
            requests[0].path_and_query.contains("deltatoken="),
            "kept its link"
        );
    }
    env.sim.clear_requests();
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains(
            "users: Graph sent a page that cannot be used at the same link in 3 passes in a row; \
             starting the users round over with a full round"
        ),
        "{}",
        stderr(&out)
    );
    let first = &env.graph_requests(Resource::Users)[0];
    assert!(
        !first.path_and_query.contains("deltatoken=")
            && !first.path_and_query.contains("skiptoken="),
        "a full round from the start: {}",
        first.path_and_query
    );
    assert_eq!(
        env.strings(&format!(
            "SELECT display_name FROM users WHERE id = '{}'",
            u(1)
        )),
        ["Ada Two"]
    );
    // Recovered: the next pass is incremental again, with nothing left stuck.
    let out = env.sync();
    assert!(stdout(&out).contains("(incremental)"), "{}", stdout(&out));
}

#[test]
fn a_full_pass_after_a_lost_delta_state_audits_each_change() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        for n in 1..=3 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        t.add_group(&g(1), security_group("Engineering"));
        t.add_member(&g(1), &u(1), MemberKind::User);
        t.add_member(&g(1), &u(2), MemberKind::User);
    }
    env.sync();
    {
        let mut t = env.sim.tenant();
        t.remove_member(&g(1), &u(1));
        t.add_member(&g(1), &u(3), MemberKind::User);
    }
    env.sim.expire_delta_tokens();
    env.sync(); // 410: a full round with reconciliation, into a database that holds data
    assert_eq!(
        env.strings(
            "SELECT action || ' ' || entity_id || ' ' || detail FROM audit_events
             WHERE entity = 'membership' ORDER BY id"
        ),
        vec![
            format!(
                r#"added {g} {{"group":"{g}","members":2,"baseline":true}}"#,
                g = g(1)
            ),
            format!(r#"added {} {{"group":"{}","type":"user"}}"#, u(3), g(1)),
            format!(r#"removed {} {{"group":"{}","type":"user"}}"#, u(1), g(1)),
        ]
    );
}
