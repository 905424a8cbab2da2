//! The snapshot's rules: its member pages, the re-read of a group, its reconciliation.

use super::*;
use crate::store::StoredLink;

/// A snapshot's member pages plan as a full round's `members@delta` would: new links
/// added, stored ones stamped into the round, a changed type rewritten, nothing removed
/// (reconciliation does that once the snapshot is complete).
#[test]
fn listed_members_of_a_snapshot() {
    let stored = Db {
        objects: vec![("g1", json!({"displayName": "Eng"}), None, 2)],
        links: vec![
            ("g1", "u1", "user", 1),
            ("g1", "u2", "user", 2),
            ("g1", "d1", "user", 1),
        ],
        users: vec!["u9"],
        groups: vec![],
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "new, stored, already stamped, retyped, untyped-but-known",
            &[
                "+u1:user",
                "+u2:user",
                "+u3:user",
                "+d1:device",
                "+u9:unknown",
            ],
            &[
                "seen-member g1 u1 user",
                "add g1 u3 user",
                "seen-member g1 d1 device",
                "add g1 u9 user",
            ],
        ),
        (
            "a repeat on the same page plans once",
            &["+u3:user", "+u3:user"],
            &["add g1 u3 user"],
        ),
        ("an empty page changes nothing", &[], &[]),
    ];
    for (name, members, expect) in cases {
        let object = group("g1", json!({}), members);
        let list = object.members.clone().unwrap_or_default();
        assert_eq!(
            wanted_members("g1", &list),
            wanted(std::slice::from_ref(&object)),
            "{name}: the lookup reads what a delta page would"
        );
        let lookup = stored.lookup(std::slice::from_ref(&object));
        let got: Vec<String> = listed_members("g1", &list, lookup, 2)
            .iter()
            .map(show)
            .collect();
        assert_eq!(got, *expect, "case: {name}");
    }
}

/// A recheck makes the stored links exactly the listed ones (3.11 (b): whichever way the
/// catch-up reported a link added and removed in the window), keeping the hidden links of
/// soft-deleted users.
#[test]
fn recheck_makes_a_group_exact() {
    let link = |member: &str, member_type: &str, hidden: bool| StoredLink {
        member: member.into(),
        member_type: member_type.into(),
        hidden,
    };
    let stored = [
        link("u1", "user", false),
        link("stale", "user", false),
        link("soft", "user", true),
        link("d1", "user", false),
    ];
    let listed = |entries: &[&str]| group("g1", json!({}), entries).members.unwrap_or_default();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "the stale link goes, the hidden one stays, the new one comes, a type is fixed",
            &["+u1:user", "+d1:device", "+u4:user", "+u4:user"],
            &[
                "seen-member g1 d1 device",
                "add g1 u4 user",
                "remove g1 stale user NotReported",
            ],
        ),
        (
            "an empty list removes every visible link",
            &[],
            &[
                "remove g1 u1 user NotReported",
                "remove g1 stale user NotReported",
                "remove g1 d1 user NotReported",
            ],
        ),
        (
            "a list that matches changes nothing, an untyped entry keeps the stored type",
            &["+u1:user", "+stale:user", "+d1:unknown"],
            &[],
        ),
    ];
    for (name, entries, expect) in cases {
        let got: Vec<String> = recheck("g1", &listed(entries), &stored)
            .iter()
            .map(show)
            .collect();
        assert_eq!(got, *expect, "case: {name}");
    }
}

/// A snapshot's end tombstones what it did not list, but leaves unseen links to a re-read
/// of their groups (their member may have been deleted after its listing).
#[test]
fn a_snapshot_defers_unseen_links_to_a_recheck() {
    let unseen = Unseen {
        objects: vec![("g9".into(), Some("Old".into()))],
        links: vec![
            ("g2".into(), "u1".into(), "user".into()),
            ("g1".into(), "u1".into(), "user".into()),
            ("g2".into(), "d1".into(), "device".into()),
        ],
    };
    let (changes, groups) = reconcile_snapshot(Kind::Group, unseen);
    let got: Vec<String> = changes.iter().map(show).collect();
    assert_eq!(got, ["delete g9 soft NotReported"]);
    assert_eq!(groups, ["g1", "g2"]);
}
