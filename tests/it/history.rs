//! `entra-sync team`: the team now, at a moment and its changes, from a history of passes.

use serde_json::{Value, json};

use crate::sim::MemberKind;
use crate::support::*;

/// Waits until the clock has left the second `after`, so the next pass's events carry a
/// later timestamp than everything before (the database has whole seconds).
fn next_second(after: &str) {
    wait_for("the next second", std::time::Duration::from_secs(5), || {
        entra_sync::store::now().as_str() > after
    });
}

fn json_of(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let out = env.run(args);
    assert_success(&out);
    serde_json::from_str::<Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Sorted member ids of `team [--at ...] --format json`.
fn member_ids(env: &TestEnv, at: Option<&str>) -> Vec<String> {
    let mut args = vec!["team", "--format", "json"];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let mut ids: Vec<String> = json_of(env, &args)
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The last pass's (started_at, finished_at).
fn last_run(env: &TestEnv) -> (String, String) {
    let rows = env
        .strings("SELECT started_at || ' ' || finished_at FROM sync_runs ORDER BY id DESC LIMIT 1");
    let (a, b) = rows[0].split_once(' ').unwrap();
    (a.to_owned(), b.to_owned())
}

/// Four passes: the first import; a leave by membership, a leave by disabling, a join; a
/// re-join and a leave by deletion; a mapping change that brings a second group's member.
fn history(env: &TestEnv) -> Vec<(String, String)> {
    {
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
    let mut runs = Vec::new();
    env.sync();
    runs.push(last_run(env));

    next_second(&runs[0].1);
    {
        let mut t = env.sim.tenant();
        t.remove_member(&g(1), &u(2));
        t.update_user(&u(3), json!({"accountEnabled": false}));
        t.add_member(&g(1), &u(4), MemberKind::User);
    }
    env.sync();
    runs.push(last_run(env));

    next_second(&runs[1].1);
    {
        let mut t = env.sim.tenant();
        t.add_member(&g(1), &u(2), MemberKind::User);
        t.soft_delete_user(&u(1));
    }
    env.sync();
    runs.push(last_run(env));

    next_second(&runs[2].1);
    env.write_config(r#"groups = ["Engineering", "Marketing"]"#);
    env.sync();
    runs.push(last_run(env));
    runs
}

#[test]
fn team_at_any_moment_of_the_history() {
    let env = TestEnv::new();
    let runs = history(&env);

    assert_eq!(member_ids(&env, Some(&runs[0].1)), vec![u(1), u(2), u(3)]);
    assert_eq!(member_ids(&env, Some(&runs[1].1)), vec![u(1), u(4)]);
    assert_eq!(member_ids(&env, Some(&runs[2].1)), vec![u(2), u(4)]);
    assert_eq!(member_ids(&env, Some(&runs[3].1)), vec![u(2), u(4), u(5)]);
    // Now, from team_members, is the reconstruction at the latest moment, field for field.
    let now = json_of(&env, &["team", "--format", "json"]);
    assert_eq!(
        now,
        json_of(&env, &["team", "--format", "json", "--at", &runs[3].1])
    );
    assert_eq!(env.team(), vec![u(2), u(4), u(5)]);

    // A re-joined member joined when it came back, not at the first import.
    let at_three = json_of(&env, &["team", "--format", "json", "--at", &runs[2].1]);
    let bo = at_three.iter().find(|m| m["id"] == u(2)).unwrap();
    assert!(
        bo["joined_at"].as_str().unwrap() >= runs[2].0.as_str(),
        "{bo}"
    );
    assert_eq!(bo["user_principal_name"], "bo.ek@contoso.example");
    assert_eq!(bo["display_name"], "Bo Ek");
    assert_eq!(bo["team"], "Microsoft Entra ID Users");

    // Text and CSV carry the same members.
    let out = env.run(&["team", "--at", &runs[1].1]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains(": 2 members"), "{text}");
    assert!(text.contains("ada.lind@contoso.example") && text.contains("di.berg@contoso.example"));
    let out = env.run(&["team", "--format", "csv", "--at", &runs[1].1]);
    assert_success(&out);
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "user_principal_name,display_name,id,joined_at,team"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(&format!("ada.lind@contoso.example,Ada Lind,{},", u(1))));
}

#[test]
fn team_before_the_first_pass_is_unknown() {
    let env = TestEnv::new();
    let out = env.run(&["team", "--at", "2020-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not exist yet"),
        "{}",
        stderr(&out)
    );
    env.sync();
    let out = env.run(&["team", "--at", "2020-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("earlier than the first pass"), "{err}");
    let out = env.run(&["team", "--at", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("neither a date"), "{}", stderr(&out));
}

#[test]
fn team_changes_say_who_when_and_why() {
    let env = TestEnv::new();
    let runs = history(&env);
    let changes = |since: &str, until: Option<&str>| -> Vec<(String, String, String)> {
        let mut args = vec!["team", "--changes", "--since", since, "--format", "json"];
        if let Some(until) = until {
            args.extend(["--until", until]);
        }
        json_of(&env, &args)
            .iter()
            .map(|c| {
                (
                    c["change"].as_str().unwrap().to_owned(),
                    c["id"].as_str().unwrap().to_owned(),
                    c["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let t = |change: &str, id: String, reason: &str| (change.to_owned(), id, reason.to_owned());

    let all = changes(&runs[0].0, None);
    assert_eq!(all.len(), 3 + 3 + 2 + 1, "{all:?}");
    // The first import is a baseline (one membership event per group, not per member), so
    // its joins give the new account as their reason.
    for (change, id, reason) in &all[..3] {
        assert_eq!(change, "joined");
        assert_eq!(reason, "new account", "{id}");
    }
    let mut second = changes(&runs[1].0, Some(&runs[1].1));
    second.sort();
    assert_eq!(
        second,
        vec![
            t("joined", u(4), "membership added (Engineering)"),
            t("left", u(2), "membership removed (Engineering)"),
            t("left", u(3), "account disabled"),
        ]
    );
    let mut third = changes(&runs[2].0, Some(&runs[2].1));
    third.sort();
    assert_eq!(
        third,
        vec![
            t("joined", u(2), "membership added (Engineering)"),
            t("left", u(1), "account deleted (soft)"),
        ]
    );
    assert_eq!(
        changes(&runs[3].0, None),
        vec![t("joined", u(5), "mapping or mapped group change")]
    );

    let out = env.run(&[
        "team",
        "--changes",
        "--since",
        &runs[1].0,
        "--until",
        &runs[2].1,
    ]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("2 joined, 3 left"), "{text}");
    assert!(text.contains("cy.holm@contoso.example") && text.contains("account disabled"));
}
