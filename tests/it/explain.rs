//! `entra-sync explain WHO` (issue 8.4): the real binary on a database a pass filled.

use serde_json::{Value, json};

use crate::sim::MemberKind;
use crate::support::*;

/// Engineering > Platform > Platform Core (nested), Sales (unmapped), two groups named
/// Marketing (an ambiguous mapping entry). Ada is in Platform Core; Bo (disabled) and Cy
/// (soft-deleted) are direct members of Engineering; Di is only in Sales and Marketing; two
/// users are called Sam Lee.
fn tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for (n, name) in [
        (1, "Ada Lind"),
        (2, "Bo Ek"),
        (3, "Cy Holm"),
        (4, "Di Berg"),
    ] {
        t.add_user(&u(n), user_props(name));
    }
    t.add_user(&u(5), user_props("Sam Lee"));
    let mut other_sam = user_props("Sam Lee");
    other_sam["userPrincipalName"] = json!("sam.lee2@contoso.example");
    other_sam["mail"] = json!("sam.lee2@contoso.example");
    other_sam["userType"] = json!("Guest");
    t.add_user(&u(6), other_sam);
    t.add_group(&g(1), security_group("Engineering"));
    t.add_group(&g(2), security_group("Platform"));
    t.add_group(&g(3), security_group("Platform Core"));
    t.add_group(&g(4), security_group("Sales"));
    t.add_group(&g(5), security_group("Marketing"));
    t.add_group(&g(6), security_group("Marketing"));
    t.add_member(&g(1), &g(2), MemberKind::Group);
    t.add_member(&g(2), &g(3), MemberKind::Group);
    t.add_member(&g(3), &u(1), MemberKind::User);
    t.add_member(&g(1), &u(2), MemberKind::User);
    t.add_member(&g(1), &u(3), MemberKind::User);
    t.add_member(&g(4), &u(4), MemberKind::User);
    t.add_member(&g(5), &u(4), MemberKind::User);
    t.add_member(&g(1), &u(5), MemberKind::User);
    t.update_user(&u(2), json!({"accountEnabled": false}));
}

fn synced() -> TestEnv {
    let env = TestEnv::with_mapping(r#"groups = ["Engineering", "Marketing"]"#);
    tenant(&env);
    env.sync();
    env.sim.tenant().soft_delete_user(&u(3));
    env.sync();
    env
}

#[track_caller]
fn explain_ok(env: &TestEnv, who: &str) -> String {
    let out = env.run(&["explain", who]);
    assert_success(&out);
    stdout(&out)
}

#[test]
fn a_nested_member_is_in_with_the_path_and_the_audit_trail() {
    let env = synced();
    env.sim.clear_requests();
    let audit_before = env.count("SELECT count(*) FROM audit_events");
    let text = explain_ok(&env, "ADA.LIND@contoso.example");
    assert!(text.contains(&format!("id:        {}", u(1))), "{text}");
    assert!(
        text.contains("account:   enabled, member, not deleted"),
        "{text}"
    );
    assert!(text.contains("verdict:   IN the team"), "{text}");
    assert!(
        text.contains("  Engineering > Platform > Platform Core\n"),
        "{text}"
    );
    assert!(text.contains("team added {\"team\":"), "{text}");
    assert!(text.contains("user created"), "{text}");
    // The ambiguous entry is reported whoever is explained.
    assert!(text.contains("\"Marketing\" matches 2 groups"), "{text}");
    // From the database alone, and it writes nothing.
    assert!(env.sim.requests().is_empty());
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit_before);

    let out = env.run(&["explain", "--json", &u(1).to_uppercase()]);
    assert_success(&out);
    let e: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(e["in_team"], true);
    assert_eq!(e["in_team_members"], true);
    assert_eq!(e["user"]["user_principal_name"], "ada.lind@contoso.example");
    let path: Vec<&str> = e["paths"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["Engineering", "Platform", "Platform Core"]);
    assert!(e["audit"].as_array().unwrap().len() <= 10);
}

#[test]
fn the_last_ten_audit_events_newest_first() {
    let env = synced();
    for n in 0..12 {
        env.sim
            .tenant()
            .update_user(&u(1), json!({"jobTitle": format!("Title {n}")}));
        env.sync();
    }
    let out = env.run(&["explain", "--json", "ada lind"]);
    assert_success(&out);
    let e: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let audit = e["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 10);
    assert!(
        audit[0]["detail"].as_str().unwrap().contains("Title 11"),
        "{audit:?}"
    );
    assert!(
        audit[9]["detail"].as_str().unwrap().contains("Title 2"),
        "{audit:?}"
    );
}

#[test]
fn disabled_deleted_and_unmapped_users_are_out_with_the_rule() {
    let env = synced();
    let text = explain_ok(&env, "bo ek");
    assert!(text.contains("verdict:   NOT in the team"), "{text}");
    assert!(
        text.contains("disabled (sign-in blocked) and mapping.include_disabled = false"),
        "{text}"
    );
    // Still on the path: the rule, not the membership, keeps Bo out.
    assert!(text.contains("paths:\n  Engineering\n"), "{text}");

    let text = explain_ok(&env, &u(3));
    assert!(text.contains("NOT in the team"), "{text}");
    assert!(text.contains("deleted (soft, restorable) since"), "{text}");
    assert!(
        text.contains("the account is deleted (in Entra's deleted items, restorable)"),
        "{text}"
    );
    assert!(text.contains("team removed"), "{text}");

    let text = explain_ok(&env, "DI.BERG@CONTOSO.EXAMPLE");
    assert!(text.contains("NOT in the team"), "{text}");
    assert!(text.contains("no path from any mapped group (\"Engineering\") to the user; mapping.groups entries that bring no one: \"Marketing\""), "{text}");

    env.write_config("groups = [\"Engineering\"]\nnested = false");
    let text = explain_ok(&env, "ada.lind@contoso.example");
    assert!(text.contains("only through nested groups (Engineering > Platform > Platform Core), and mapping.nested = false"), "{text}");
    // The config changed but the team was not recomputed yet: explain says so.
    assert!(text.contains("team_members says in"), "{text}");
}

#[test]
fn a_deleted_pinned_group_is_the_reason() {
    let env = TestEnv::new();
    {
        let mut t = env.sim.tenant();
        t.add_user(&u(1), user_props("Ada Lind"));
        t.add_group(&g(1), unified_group("Engineering"));
        t.add_member(&g(1), &u(1), MemberKind::User);
    }
    env.sync();
    env.sim.tenant().delete_group(&g(1));
    env.sync();
    let text = explain_ok(&env, "Ada Lind");
    assert!(text.contains("NOT in the team"), "{text}");
    assert!(
        text.contains(&format!("a member of \"Engineering\" ({}), the group mapping.groups entry \"Engineering\" is pinned to, which is deleted", g(1))),
        "{text}"
    );
}

#[test]
fn several_or_no_matches_exit_1() {
    let env = synced();
    let out = env.run(&["explain", "sam lee"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("2 users match \"sam lee\""), "{text}");
    assert!(text.contains(&u(5)) && text.contains(&u(6)), "{text}");
    assert!(
        stderr(&out).contains("give one's object id or user principal name"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["explain", "--json", "sam lee"]);
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(e["matches"].as_array().unwrap().len(), 2);

    let out = env.run(&["explain", "nobody@contoso.example"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no user in"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}
