//! What `group_members` promises (issue 8.5): the direct memberships of live groups only.

use crate::sim::MemberKind;
use crate::support::*;

#[test]
fn a_soft_deleted_groups_memberships_vanish_and_come_back_on_restore() {
    let env = TestEnv::with_mapping(r#"groups = ["Engineering", "Marketing"]"#);
    {
        let mut t = env.sim.tenant();
        for n in 1..=3 {
            t.add_user(&u(n), user_props(&format!("User {n}")));
        }
        t.add_group(&g(1), security_group("Engineering"));
        t.add_group(&g(2), unified_group("Marketing"));
        t.add_member(&g(1), &u(1), MemberKind::User);
        t.add_member(&g(2), &u(2), MemberKind::User);
        t.add_member(&g(2), &u(3), MemberKind::User);
        t.add_member(&g(2), &g(1), MemberKind::Group);
    }
    env.sync();
    let all = env.memberships();
    assert_eq!(all.len(), 4);
    let added_at = env.strings("SELECT added_at FROM group_members ORDER BY group_id, member_id");

    env.sim.tenant().delete_group(&g(2));
    env.sync();
    assert_eq!(env.memberships(), vec![format!("{} {} user", g(1), u(1))]);
    // Kept internally, for the restore (Graph will not report them again).
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM group_members_all WHERE group_id = '{}'",
            g(2)
        )),
        3
    );
    // A full pass while the group is deleted keeps them too.
    assert_success(&env.run(&["sync", "--full"]));
    assert_eq!(env.memberships().len(), 1);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM group_members_all WHERE group_id = '{}'",
            g(2)
        )),
        3
    );

    env.sim.tenant().restore_group(&g(2));
    env.sync();
    assert_eq!(env.memberships(), all);
    assert_eq!(
        env.strings("SELECT added_at FROM group_members ORDER BY group_id, member_id"),
        added_at
    );
    assert_eq!(env.team(), vec![u(1), u(2), u(3)]);
    // The view has exactly the documented columns.
    assert_eq!(
        env.strings("SELECT name FROM pragma_table_info('group_members') ORDER BY cid"),
        vec!["group_id", "member_id", "member_type", "added_at"]
    );
}
