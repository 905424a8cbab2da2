//! Full passes by snapshot (graph-protocol.md 3.11): "latest" links first, the tenant listed
//! in parallel, reconciled, caught up; under concurrent change, a kill, a refused partition
//! filter, a spent quota and a lost delta state.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::sim::{Endpoint, Fault, MemberKind, Recorded, Target};
use crate::support::*;

/// Users whose names start across the partitions and outside them (digits, `_`, capitals,
/// non-ASCII), Engineering with 1,200 members (two member pages), nested groups, a device.
fn tenant(env: &TestEnv, users: u32, groups: u32) {
    let mut t = env.sim.tenant();
    let starts = [
        "ada", "Bo", "9lives", "_svc", "zed", "Ösa", "mia", "yan", "k",
    ];
    for n in 1..=users {
        let name = format!("{} {n}", starts[n as usize % starts.len()]);
        t.add_user(&u(n), user_props(&name));
    }
    t.add_group(&g(1), security_group("Engineering"));
    for n in 1..=users.min(1200) {
        t.add_member(&g(1), &u(n), MemberKind::User);
    }
    for n in 2..=groups {
        t.add_group(&g(n), security_group(&format!("Team {n}")));
        for m in 0..5 {
            t.add_member(&g(n), &u(1 + (n * 7 + m) % users), MemberKind::User);
        }
    }
    t.add_member(&g(2), &g(1), MemberKind::Group);
    t.add_member(
        &g(2),
        "dddddddd-0000-4000-8000-000000000001",
        MemberKind::Device,
    );
}

/// The database holds exactly the tenant: live users and groups, and every direct link.
#[track_caller]
fn assert_exact(env: &TestEnv) {
    let (users, groups, links) = {
        let t = env.sim.tenant();
        let users: BTreeSet<String> = t.user_ids().into_iter().collect();
        let groups: BTreeSet<String> = t.group_ids().into_iter().collect();
        let mut links = BTreeSet::new();
        for group in &groups {
            for (member, _) in t.members_of(group) {
                links.insert(format!("{group} {member}"));
            }
        }
        (users, groups, links)
    };
    let live = |table: &str| -> BTreeSet<String> {
        env.strings(&format!("SELECT id FROM {table} WHERE deleted_at IS NULL"))
            .into_iter()
            .collect()
    };
    assert_eq!(live("users"), users, "live users");
    assert_eq!(live("groups"), groups, "live groups");
    let stored: BTreeSet<String> = env
        .strings("SELECT group_id || ' ' || member_id FROM group_members")
        .into_iter()
        .collect();
    let missing: Vec<_> = links.difference(&stored).collect();
    let extra: Vec<_> = stored.difference(&links).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "links missing {missing:?}, extra {extra:?}"
    );
    for table in ["snapshot_state", "snapshot_chains", "snapshot_groups"] {
        assert_eq!(
            env.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table} is empty once the snapshot is done"
        );
    }
}

fn to(requests: &[Recorded], endpoint: Endpoint) -> Vec<&Recorded> {
    requests.iter().filter(|r| r.endpoint == endpoint).collect()
}

fn latest(requests: &[Recorded]) -> usize {
    requests
        .iter()
        .filter(|r| r.path_and_query.contains("deltatoken=latest"))
        .count()
}

#[test]
fn a_first_import_is_a_snapshot_then_a_catch_up() {
    let env = TestEnv::new();
    tenant(&env, 1300, 12);
    let out = env.sync();
    assert!(stdout(&out).contains("(full)"), "{}", stdout(&out));
    assert_exact(&env);

    let requests = env.sim.requests();
    assert_eq!(latest(&requests), 2, "one \"latest\" link per resource");
    for endpoint in [Endpoint::UsersDelta, Endpoint::GroupsDelta] {
        assert_eq!(
            to(&requests, endpoint).len(),
            2,
            "{endpoint:?}: the latest link and one catch-up page, no delta chain"
        );
    }
    assert!(
        to(&requests, Endpoint::UserList).len() >= 27,
        "27 partitions"
    );
    let members = to(&requests, Endpoint::Members);
    assert!(members.len() >= 13, "every group, Engineering twice");
    assert!(
        members.iter().all(|r| r.in_batch),
        "member lists are read through $batch"
    );
    assert!(!to(&requests, Endpoint::Batch).is_empty());
    // The first import is a baseline: one audit row per group for its members.
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'membership'"),
        12
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'user' AND action = 'created'"),
        1300
    );

    // The next pass is incremental, one page per resource.
    env.sim.clear_requests();
    env.sim
        .tenant()
        .add_member(&g(3), &u(1299), MemberKind::User);
    let out = env.sync();
    assert!(stdout(&out).contains("(incremental)"), "{}", stdout(&out));
    let requests = env.sim.requests();
    assert_eq!(to(&requests, Endpoint::UsersDelta).len(), 1);
    assert_eq!(to(&requests, Endpoint::GroupsDelta).len(), 1);
    assert_eq!(
        to(&requests, Endpoint::Members).len(),
        0,
        "no recheck after the catch-up"
    );
    assert_exact(&env);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'membership' AND action = 'added'
             AND entity_id = '00000000-0000-4000-8000-000000000513'"
        ),
        1,
        "a later change is audited per link"
    );
}

/// After a first import, starts `sync --full` and returns once its "latest" links are taken:
/// what the tenant does from then on falls inside the snapshot's window, which one slow users
/// partition keeps open for 2 s. `unreported`: the catch-up leaves out links added and removed
/// inside the window (3.11 (b)).
fn full_pass_inside_a_window(env: &TestEnv, unreported: bool) -> std::process::Child {
    env.sync();
    env.sim.clear_requests();
    {
        let mut settings = env.sim.settings();
        settings.page_latency = Duration::from_millis(50);
        settings.transient_links_unreported = unreported;
    }
    env.sim
        .push_fault(Endpoint::UserList, Fault::Delay(Duration::from_secs(2)));
    let child = env.spawn(&["sync", "--full"]);
    wait_for("the groups' latest link", Duration::from_secs(20), || {
        env.sim
            .requests()
            .iter()
            .any(|r| r.endpoint == Endpoint::GroupsDelta && r.path_and_query.contains("latest"))
    });
    child
}

/// Changes while a snapshot (`sync --full`) lists: a link added after the "latest" link and
/// removed after the snapshot read it ends absent whichever way the catch-up reports it
/// (3.11 (b)); every other change of the window ends exact too, and a user soft-deleted
/// meanwhile keeps its link, hidden, though member lists no longer show it.
#[test]
fn changes_during_the_snapshot_end_exact_either_way_graph_reports_them() {
    for unreported in [false, true] {
        let env = TestEnv::new();
        tenant(&env, 200, 30);
        let child = full_pass_inside_a_window(&env, unreported);
        {
            let mut t = env.sim.tenant();
            t.add_member(&g(5), &u(150), MemberKind::User); // added, read, removed
            t.add_member(&g(6), &u(160), MemberKind::User); // added, kept
            t.remove_member(&g(7), &u(50)); // removed (a member since the tenant was built)
            t.add_user(&u(900), user_props("new 900"));
            t.soft_delete_user(&u(10));
        }
        let g5 = g(5);
        wait_for("g5's members read", Duration::from_secs(20), || {
            env.sim.requests().iter().any(|r| {
                r.endpoint == Endpoint::Members && r.path_and_query.contains(&g5) && r.status == 200
            })
        });
        env.sim.tenant().remove_member(&g(5), &u(150));
        let out = child.wait_with_output().unwrap();
        assert_success(&out);
        assert_exact(&env);
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM group_members WHERE group_id = '{g5}'"
            )),
            5,
            "unreported = {unreported}: the transient link is gone"
        );
        // The soft-deleted user's links stay hidden for a restore (3.8).
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM group_members_all WHERE member_id = '{}'",
                u(10)
            )),
            1,
            "the hidden link of the soft-deleted user is kept"
        );
    }
}

/// Runs `sync` and kills it once `condition` (a query of one boolean) holds on its database,
/// waiting at most 30 s for that.
fn kill_sync_once(env: &TestEnv, what: &str, condition: &str) {
    let mut child = env.spawn(&["sync"]);
    wait_for(what, Duration::from_secs(30), || {
        env.db()
            .query_row(condition, [], |r| r.get::<_, bool>(0))
            .unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A snapshot killed part-way resumes with what it had not finished: no new "latest" link,
/// the finished chains not listed again.
#[test]
fn a_killed_snapshot_resumes_where_it_stopped() {
    let env = TestEnv::new();
    tenant(&env, 300, 40);
    env.sim.settings().page_latency = Duration::from_millis(20);
    for _ in 0..3 {
        env.sim
            .push_fault(Endpoint::UserList, Fault::Delay(Duration::from_secs(30)));
    }
    kill_sync_once(
        &env,
        "some chains and groups done",
        "SELECT (SELECT count(*) FROM snapshot_chains WHERE done = 1) >= 20
            AND (SELECT count(*) FROM snapshot_groups WHERE done = 1) >= 20",
    );
    assert_eq!(
        env.sim.pending_faults(),
        0,
        "the three slow partitions were asked for"
    );
    env.sim.settings().page_latency = Duration::ZERO;
    let done_groups = env.count("SELECT count(*) FROM snapshot_groups WHERE done = 1");
    env.sim.clear_requests();
    let out = env.sync();
    assert!(
        stderr(&out).contains("resuming the snapshot"),
        "{}",
        stderr(&out)
    );
    let requests = env.sim.requests();
    assert_eq!(
        latest(&requests),
        0,
        "the catch-up link of the first run is kept"
    );
    assert!(
        to(&requests, Endpoint::UserList).len() < 27,
        "finished partitions are not listed again"
    );
    assert!(
        (to(&requests, Endpoint::Members).len() as i64) <= 40 - done_groups,
        "groups read before the kill are not read again"
    );
    assert_exact(&env);
}

/// A snapshot resumed after its skiptokens expired (graph-protocol.md 3.4: "must restart
/// the round if that fails"): the users chain and the member list that stopped half-way are
/// listed again from their start, once, and the pass ends exact instead of failing on every
/// resume.
#[test]
fn a_resumed_snapshot_lists_again_what_its_expired_links_continued() {
    let env = TestEnv::new();
    tenant(&env, 2500, 3);
    {
        let mut settings = env.sim.settings();
        settings.refuse_partition_filter = true; // one chain of three pages
        settings.page_latency = Duration::from_millis(1000);
    }
    kill_sync_once(
        &env,
        "a users page and a members page with their nextLinks stored",
        "SELECT (SELECT count(*) FROM snapshot_chains WHERE next_link IS NOT NULL) = 1
            AND (SELECT count(*) FROM snapshot_groups WHERE next_link IS NOT NULL) = 1",
    );
    env.sim.settings().page_latency = Duration::ZERO;
    env.sim.expire_list_links();
    env.sim.clear_requests();
    let out = env.sync();
    let log = stderr(&out);
    assert!(log.contains("resuming the snapshot"), "{log}");
    assert!(
        log.contains("no longer accepts the stored link of listing chain all"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "no longer accepts the stored link of group {}'s member list",
            g(1)
        )),
        "{log}"
    );
    let refused = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 400 && r.path_and_query.contains("skiptoken"))
        .count();
    assert_eq!(refused, 2, "each expired link is tried once");
    assert_exact(&env);
}

#[test]
fn a_member_list_whose_stored_link_answers_404_is_read_again_not_taken_as_deleted() {
    let env = TestEnv::new();
    tenant(&env, 2500, 3);
    {
        let mut settings = env.sim.settings();
        settings.refuse_partition_filter = true;
        settings.expired_list_links_not_found = true; // 404 UnknownError (notes 4.6)
        settings.page_latency = Duration::from_millis(1000);
    }
    kill_sync_once(
        &env,
        "a members page with its nextLink stored",
        "SELECT (SELECT count(*) FROM snapshot_groups WHERE next_link IS NOT NULL) = 1",
    );
    env.sim.settings().page_latency = Duration::ZERO;
    env.sim.expire_list_links();
    let out = env.sync();
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "Graph answered 404 to the link of group {}'s member list",
            g(1)
        )),
        "{log}"
    );
    // Every member of the group is stored, not only those of the pages before the kill.
    assert_exact(&env);
}

/// The re-read after the catch-up (3.11 (b)) meets the same 404 at a nextLink: it reads the
/// list again whole, so a link added and removed inside the window, which the catch-up does
/// not report, still goes.
#[test]
fn a_re_read_whose_member_link_answers_404_reads_the_list_again() {
    let env = TestEnv::new();
    tenant(&env, 1300, 3); // g1: 1,200 members, two pages
    let child = full_pass_inside_a_window(&env, true);
    let g1 = g(1);
    env.sim.tenant().add_member(&g1, &u(1250), MemberKind::User);
    wait_for("g1's second page read", Duration::from_secs(20), || {
        env.sim.requests().iter().any(|r| {
            r.endpoint == Endpoint::Members
                && r.path_and_query.contains(&g1)
                && r.path_and_query.contains("skiptoken")
                && r.status == 200
        })
    });
    env.sim.tenant().remove_member(&g1, &u(1250));
    // The next member page read at a nextLink is the re-read's second page of g1.
    env.sim.push_fault(
        Target::Continuation(Endpoint::Members),
        Fault::Status {
            status: 404,
            retry_after: None,
            code: "UnknownError",
        },
    );
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "Graph answered 404 to the link of group {g1}'s member list"
        )),
        "{log}"
    );
    assert_eq!(env.sim.pending_faults(), 0);
    // u1250, read by the snapshot and removed after, is gone.
    assert_exact(&env);
}

#[test]
fn a_refused_partition_filter_lists_users_in_one_chain() {
    let env = TestEnv::new();
    tenant(&env, 1300, 3);
    env.sim.settings().refuse_partition_filter = true;
    let out = env.sync();
    assert!(
        stderr(&out).contains("refused the partition filter"),
        "{}",
        stderr(&out)
    );
    let requests = env.sim.requests();
    let lists = to(&requests, Endpoint::UserList);
    assert!(lists.iter().any(|r| r.status == 400));
    assert!(
        lists
            .iter()
            .any(|r| r.status == 200 && !r.path_and_query.contains("filter")),
        "one unfiltered chain"
    );
    assert_exact(&env);
}

/// A quota far below what the snapshot needs: items of `$batch` answered 429 are retried
/// after their Retry-After, and the pass completes exact.
#[test]
fn a_spent_quota_slows_the_snapshot_but_never_fails_it() {
    let env = TestEnv::new();
    tenant(&env, 100, 80);
    env.sim.settings().ru_quota = Some((60, Duration::from_secs(1)));
    env.sync();
    assert_exact(&env);
    let counters = env.sim.counters();
    assert!(
        counters.throttled_in_batch > 0,
        "the quota was spent inside $batch: {counters:?}"
    );
}

#[test]
fn full_pass_delta_keeps_the_delta_chain() {
    let env = TestEnv::new();
    env.delta_chain();
    tenant(&env, 300, 5);
    env.sync();
    assert_exact(&env);
    let requests = env.sim.requests();
    assert_eq!(latest(&requests), 0);
    assert!(to(&requests, Endpoint::UserList).is_empty());
    assert!(to(&requests, Endpoint::Members).is_empty());
}

/// A lost delta state (410) starts a snapshot, whose changes are audited one by one (it is
/// no first import).
#[test]
fn a_lost_delta_state_is_recovered_by_a_snapshot() {
    let env = TestEnv::new();
    tenant(&env, 300, 5);
    env.sync();
    {
        let mut t = env.sim.tenant();
        t.add_member(&g(3), &u(250), MemberKind::User);
        t.update_user(&u(4), json!({"jobTitle": "Lead"}));
    }
    env.sim.push_fault(Endpoint::UsersDelta, Fault::Gone);
    env.sim.push_fault(Endpoint::GroupsDelta, Fault::Gone);
    env.sim.clear_requests();
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert!(stdout(&out).contains("(full)"), "{}", stdout(&out));
    let requests = env.sim.requests();
    assert_eq!(latest(&requests), 2, "{}", stderr(&out));
    assert!(!to(&requests, Endpoint::UserList).is_empty());
    assert_exact(&env);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM audit_events WHERE entity = 'membership' AND action = 'added'
             AND entity_id = '{}'",
            u(250)
        )),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE entity = 'user' AND action = 'updated'"),
        1
    );
}

fn forbidden() -> Fault {
    Fault::Status {
        status: 403,
        retry_after: None,
        code: "Authorization_RequestDenied",
    }
}

/// A group with hidden membership answers 403 to its member list without Member.Read.Hidden
/// (notes 7) while the others are listed: the snapshot completes, keeps that group's
/// stored links, and names the permission.
#[test]
fn a_member_list_refused_with_403_keeps_its_links_and_names_the_permission() {
    let env = TestEnv::new();
    tenant(&env, 30, 4);
    env.sync();
    let links = env.memberships().len();
    env.sim.push_fault(Endpoint::UsersDelta, Fault::Gone);
    env.sim.push_fault(Endpoint::GroupsDelta, Fault::Gone);
    env.sim.push_fault(Endpoint::Members, forbidden());
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert!(stdout(&out).contains("(full)"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("refused to list the members of 1 group")
            && stderr(&out).contains("Member.Read.Hidden"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.memberships().len(), links);
    assert_exact(&env);
    // The next pass is incremental: the snapshot is complete.
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert!(stdout(&out).contains("(incremental)"), "{}", stdout(&out));
}

/// Every member list refused is the group permission missing, not hidden groups: the pass
/// fails, nothing is reconciled, and the next pass reads the lists again.
#[test]
fn every_member_list_refused_fails_the_snapshot() {
    let env = TestEnv::new();
    tenant(&env, 30, 3);
    env.sync();
    let links = env.memberships();
    env.sim.push_fault(Endpoint::UsersDelta, Fault::Gone);
    env.sim.push_fault(Endpoint::GroupsDelta, Fault::Gone);
    for _ in 0..3 {
        env.sim.push_fault(Endpoint::Members, forbidden());
    }
    let out = env.run(&["sync"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("GroupMember.Read.All"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.memberships(), links);
    let out = env.run(&["sync"]);
    assert_success(&out);
    assert_exact(&env);
}
