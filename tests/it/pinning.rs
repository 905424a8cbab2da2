//! Issue 7.1: a mapped group can't be swapped for a look-alike. An id matches ids only; a
//! name is pinned to the one group it first resolved to, whatever later carries the name.

use crate::sim::MemberKind;
use crate::support::*;

/// Engineering (Microsoft 365, so its deletion is soft) with u1..u3, and u4, u5 who are in
/// no group yet.
fn tenant(env: &TestEnv) {
    let mut t = env.sim.tenant();
    for n in 1..=5 {
        t.add_user(&u(n), user_props(&format!("User {n}")));
    }
    t.add_group(&g(1), unified_group("Engineering"));
    for n in 1..=3 {
        t.add_member(&g(1), &u(n), MemberKind::User);
    }
}

/// A group anyone may create, named `name`, holding u4 and u5.
fn lookalike(env: &TestEnv, name: &str) {
    let mut t = env.sim.tenant();
    t.add_group(&g(9), security_group(name));
    t.add_member(&g(9), &u(4), MemberKind::User);
    t.add_member(&g(9), &u(5), MemberKind::User);
}

fn engineering() -> Vec<String> {
    vec![u(1), u(2), u(3)]
}

#[test]
fn a_lookalike_named_after_the_mapped_id_is_not_the_group() {
    let env = TestEnv::with_mapping(&format!("groups = [\"{}\"]", g(1).to_uppercase()));
    tenant(&env);
    lookalike(&env, &g(1));
    let out = env.sync();
    assert_eq!(env.team(), engineering(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("matches 2 groups"),
        "{}",
        stderr(&out)
    );

    // The real group soft-deleted: its members leave, the look-alike never steps in.
    env.sim.tenant().delete_group(&g(1));
    let out = env.sync();
    assert_eq!(env.team(), Vec::<String>::new());
    assert!(
        stderr(&out).contains("which is deleted"),
        "{}",
        stderr(&out)
    );
    env.sim.tenant().restore_group(&g(1));
    env.sync();
    assert_eq!(env.team(), engineering());
}

#[test]
fn a_second_group_taking_the_name_changes_nothing() {
    let env = TestEnv::new();
    tenant(&env);
    let out = env.sync();
    assert!(
        stderr(&out).contains(&format!(
            "\"Engineering\" pinned to group \"Engineering\" ({})",
            g(1)
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.strings("SELECT entry || ' ' || group_id FROM mapping_pins"),
        vec![format!("engineering {}", g(1))]
    );
    lookalike(&env, "ENGINEERING");
    let out = env.sync();
    assert_eq!(env.team(), engineering());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("is also the name of \"ENGINEERING\" ({})", g(9)))
            && err.contains("put its object id in mapping.groups"),
        "{err}"
    );
    // status says it too, and check (against the tenant) warns without failing the entry.
    let status = stdout(&env.run(&["status"]));
    assert!(
        status.contains(&format!(
            "\"Engineering\" is \"Engineering\" ({}), pinned since",
            g(1)
        )),
        "{status}"
    );
    assert!(status.contains(&g(9)), "{status}");
    let check = stdout(&env.run(&["check"]));
    assert!(
        check.contains(&format!(
            "ok    mapping: \"Engineering\" is Engineering ({}); pinned since",
            g(1)
        )),
        "{check}"
    );
    assert!(
        check.contains(&format!(
            "warn  mapping: \"Engineering\" is also the name of \"ENGINEERING\" ({})",
            g(9)
        )),
        "{check}"
    );

    // Re-pinning: the admin writes the object id of the group wanted.
    env.write_config(&format!("groups = [\"{}\"]", g(9)));
    env.sync();
    assert_eq!(env.team(), vec![u(4), u(5)]);
    assert_eq!(env.count("SELECT count(*) FROM mapping_pins"), 0);
}

#[test]
fn a_renamed_pinned_group_is_still_followed() {
    let env = TestEnv::new();
    tenant(&env);
    env.sync();
    env.sim.tenant().update_group(
        &g(1),
        serde_json::json!({"displayName": "Engineering (old)"}),
    );
    lookalike(&env, "Engineering");
    let out = env.sync();
    assert_eq!(env.team(), engineering());
    let err = stderr(&out);
    assert!(
        err.contains("since renamed to \"Engineering (old)\""),
        "{err}"
    );
    assert!(err.contains(&g(9)), "{err}");
}

#[test]
fn a_deleted_pinned_group_takes_its_members_and_no_lookalike_replaces_it() {
    let env = TestEnv::new();
    tenant(&env);
    env.sync();
    lookalike(&env, "Engineering");
    env.sync();
    assert_eq!(env.team(), engineering());

    env.sim.tenant().delete_group(&g(1));
    let out = env.sync();
    assert_eq!(env.team(), Vec::<String>::new());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "\"Engineering\" is pinned to group \"Engineering\" ({}), which is deleted",
            g(1)
        )) && err.contains("put its object id in mapping.groups"),
        "{err}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'team' AND action = 'removed'"),
        3
    );
    let status = stdout(&env.run(&["status"]));
    assert!(status.contains("which is deleted"), "{status}");
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("FAIL  mapping: \"Engineering\" is pinned to group"),
        "{}",
        stdout(&check)
    );

    // Restored in Entra: the pin still holds and the team follows it back.
    env.sim.tenant().restore_group(&g(1));
    env.sync();
    assert_eq!(env.team(), engineering());
}
