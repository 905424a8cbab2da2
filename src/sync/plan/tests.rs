//! The planner's rules, table by table: no database, no server.

use super::*;
use crate::store::KnownLink;

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn object(id: &str, props: Value) -> DirectoryObject {
    DirectoryObject {
        id: id.into(),
        removed: None,
        props: map(props).into(),
        members: None,
    }
}

fn removed(id: &str, removal: Removal) -> DirectoryObject {
    DirectoryObject {
        id: id.into(),
        removed: Some(removal),
        props: Props::new(),
        members: None,
    }
}

/// A group entry with `members@delta`: "+u1:user" adds, "-u1:user" removes, "+x:unknown"
/// has no `@odata.type`.
fn group(id: &str, props: Value, members: &[&str]) -> DirectoryObject {
    let members = members
        .iter()
        .map(|m| {
            let (sign, rest) = m.split_at(1);
            let (id, kind) = rest.split_once(':').expect("id:type");
            MemberChange {
                id: id.into(),
                kind: crate::graph::member_type(kind),
                removed: sign == "-",
            }
        })
        .collect();
    DirectoryObject {
        members: Some(members),
        ..object(id, props)
    }
}

/// What the database holds before the page.
#[derive(Default, Clone)]
struct Db {
    objects: Vec<(&'static str, Value, Option<Removal>, i64)>,
    /// (group, member, type, seen generation)
    links: Vec<(&'static str, &'static str, &'static str, i64)>,
    users: Vec<&'static str>,
    groups: Vec<&'static str>,
}

impl Db {
    /// The lookup the store would return for `page` (it reads exactly what `wanted` asks).
    fn lookup(&self, page: &[DirectoryObject]) -> Lookup {
        let wanted = wanted(page);
        let mut lookup = Lookup::default();
        for (id, attributes, deletion, seen) in &self.objects {
            if wanted.objects.iter().any(|w| w == id) {
                let known = Known {
                    attributes: map(attributes.clone()).into(),
                    deletion: *deletion,
                    seen_generation: *seen,
                };
                lookup.objects.insert((*id).to_owned(), known);
            }
        }
        for (group, member, member_type, seen) in &self.links {
            let named = wanted
                .links
                .iter()
                .any(|(g, members)| g == group && members.iter().any(|m| m == member));
            if named {
                let link = KnownLink {
                    member_type: (*member_type).into(),
                    seen_generation: *seen,
                };
                lookup
                    .links
                    .insert(((*group).into(), (*member).into()), link);
            }
            let purged = wanted
                .purged
                .iter()
                .any(|p| lookup.objects.contains_key(*p) && (p == group || p == member));
            if purged {
                let row = ((*group).into(), (*member).into(), (*member_type).into());
                lookup.purged_links.push(row);
            }
        }
        for id in &wanted.untyped {
            if self.users.contains(id) {
                lookup.users.insert((*id).to_owned());
            }
            if self.groups.contains(id) {
                lookup.groups.insert((*id).to_owned());
            }
        }
        lookup
    }
}

/// One line per change, so tables read like the dry run's output.
fn show(change: &Change) -> String {
    match change {
        Change::Create { id, attributes, .. } => {
            format!("create {id} {}", Value::Object(attributes.to_map()))
        }
        Change::Update {
            id,
            attributes,
            diff,
            restored,
            ..
        } => format!(
            "{} {id} {} -> {}",
            if *restored { "restore" } else { "update" },
            Value::Object(diff.clone()),
            Value::Object(attributes.to_map())
        ),
        Change::Seen { id, .. } => format!("seen {id}"),
        Change::Delete {
            id,
            removal,
            reason,
            was_live,
            ..
        } => format!(
            "delete {id} {} {reason:?}{}",
            removal.as_str(),
            if *was_live { "" } else { " (was deleted)" }
        ),
        Change::AddMember {
            group,
            member,
            member_type,
        } => format!("add {group} {member} {member_type}"),
        Change::SeenMember {
            group,
            member,
            member_type,
        } => format!("seen-member {group} {member} {member_type}"),
        Change::RemoveMember {
            group,
            member,
            member_type,
            reason,
        } => format!("remove {group} {member} {member_type} {reason:?}"),
    }
}

struct Case {
    name: &'static str,
    kind: Kind,
    db: Db,
    page: Vec<DirectoryObject>,
    generation: i64,
    expect: &'static [&'static str],
}

#[track_caller]
fn run(cases: Vec<Case>) {
    for mut case in cases {
        let lookup = case.db.lookup(&case.page);
        let changes = page(case.kind, &mut case.page, lookup, case.generation);
        let got: Vec<String> = changes.iter().map(show).collect();
        assert_eq!(got, case.expect, "case: {}", case.name);
    }
}

fn user_db(deletion: Option<Removal>, seen: i64) -> Db {
    Db {
        objects: vec![(
            "u1",
            json!({"displayName": "Ada", "mail": "a@x"}),
            deletion,
            seen,
        )],
        ..Db::default()
    }
}

#[test]
fn properties_absent_null_and_replays() {
    run(vec![
        Case {
            name: "a new object is created with what the payload carried (a null: never set)",
            kind: Kind::User,
            db: Db::default(),
            page: vec![object(
                "u1",
                json!({"displayName": "Ada", "jobTitle": null}),
            )],
            generation: 1,
            expect: &[r#"create u1 {"displayName":"Ada"}"#],
        },
        Case {
            name: "absent means unchanged, null clears",
            kind: Kind::User,
            db: user_db(None, 1),
            page: vec![object("u1", json!({"mail": null}))],
            generation: 1,
            expect: &[
                r#"update u1 {"mail":{"new":null,"old":"a@x"}} -> {"displayName":"Ada","mail":null}"#,
            ],
        },
        Case {
            // Kept absent: a snapshot's lists send every selected property, nulls too.
            name: "a null for a never-set property is no change",
            kind: Kind::User,
            db: user_db(None, 1),
            page: vec![object("u1", json!({"jobTitle": null}))],
            generation: 1,
            expect: &[],
        },
        Case {
            name: "a replay of the stored state changes nothing",
            kind: Kind::User,
            db: user_db(None, 1),
            page: vec![object("u1", json!({"displayName": "Ada", "mail": "a@x"}))],
            generation: 1,
            expect: &[],
        },
        Case {
            name: "an unchanged object in a new full round is stamped as seen",
            kind: Kind::User,
            db: user_db(None, 1),
            page: vec![object("u1", json!({"displayName": "Ada"}))],
            generation: 2,
            expect: &["seen u1"],
        },
        Case {
            name: "a repeat within the page plans once",
            kind: Kind::User,
            db: Db::default(),
            page: vec![
                object("u1", json!({"displayName": "Ada"})),
                object("u1", json!({"displayName": "Ada"})),
                object("u1", json!({"displayName": "Ada B"})),
            ],
            generation: 1,
            expect: &[
                r#"create u1 {"displayName":"Ada"}"#,
                r#"update u1 {"displayName":{"new":"Ada B","old":"Ada"}} -> {"displayName":"Ada B"}"#,
            ],
        },
    ]);
}

/// An object the page creates is tracked by its change alone until it appears again: what
/// a later entry of the same page merges with, or deletes, is what the create wrote.
#[test]
fn an_object_created_on_the_page_is_what_later_entries_see() {
    let objects = vec![
        object("u1", json!({"displayName": "Ada", "mail": "a@x"})),
        object("u1", json!({"mail": "b@x"})),
        removed("u1", Removal::Soft),
        object("u1", json!({"displayName": "Ada C"})),
    ];
    let changes = page(
        Kind::User,
        &mut objects.clone(),
        Db::default().lookup(&objects),
        1,
    );
    let shown: Vec<String> = changes.iter().map(show).collect();
    assert_eq!(
        shown,
        [
            r#"create u1 {"displayName":"Ada","mail":"a@x"}"#,
            r#"update u1 {"mail":{"new":"b@x","old":"a@x"}} -> {"displayName":"Ada","mail":"b@x"}"#,
            "delete u1 soft Removed",
            r#"restore u1 {"displayName":{"new":"Ada C","old":"Ada"}} -> {"displayName":"Ada C","mail":"b@x"}"#,
        ]
    );
    let Change::Delete { name, .. } = &changes[2] else {
        panic!("not a delete: {:?}", changes[2]);
    };
    assert_eq!(name.as_deref(), Some("Ada"), "named as the page left it");
    // Created, then deleted at once: the delete names what the create wrote.
    let objects = vec![
        object("u2", json!({"userPrincipalName": "bo@x"})),
        removed("u2", Removal::Permanent),
    ];
    let changes = page(
        Kind::User,
        &mut objects.clone(),
        Db::default().lookup(&objects),
        1,
    );
    let Some(Change::Delete { name, was_live, .. }) = changes.get(1) else {
        panic!("no delete: {changes:?}");
    };
    assert_eq!((name.as_deref(), *was_live), (Some("bo@x"), true));
}

#[test]
fn deletions_and_restores() {
    let member_of = |deletion| Db {
        links: vec![("g1", "u1", "user", 1), ("g2", "u1", "user", 1)],
        ..user_db(deletion, 1)
    };
    run(vec![
        Case {
            name: "soft delete (changed): tombstone, memberships kept",
            kind: Kind::User,
            db: member_of(None),
            page: vec![removed("u1", Removal::Soft)],
            generation: 1,
            expect: &["delete u1 soft Removed"],
        },
        Case {
            name: "a replayed soft delete changes nothing",
            kind: Kind::User,
            db: member_of(Some(Removal::Soft)),
            page: vec![removed("u1", Removal::Soft)],
            generation: 1,
            expect: &[],
        },
        Case {
            name: "permanent delete (deleted) purges the memberships it is a member of",
            kind: Kind::User,
            db: member_of(None),
            page: vec![removed("u1", Removal::Permanent)],
            generation: 1,
            expect: &[
                "delete u1 permanent Removed",
                "remove g1 u1 user Purged",
                "remove g2 u1 user Purged",
            ],
        },
        Case {
            name: "soft then permanent: audited, not counted again, memberships purged",
            kind: Kind::User,
            db: member_of(Some(Removal::Soft)),
            page: vec![removed("u1", Removal::Permanent)],
            generation: 1,
            expect: &[
                "delete u1 permanent Removed (was deleted)",
                "remove g1 u1 user Purged",
                "remove g2 u1 user Purged",
            ],
        },
        Case {
            name: "a permanent deletion is never softened",
            kind: Kind::User,
            db: user_db(Some(Removal::Permanent), 1),
            page: vec![removed("u1", Removal::Soft)],
            generation: 1,
            expect: &[],
        },
        Case {
            name: "the removal of an id never seen is a no-op, and purges nothing",
            kind: Kind::User,
            db: member_of(None),
            page: vec![
                removed("u9", Removal::Permanent),
                removed("u8", Removal::Soft),
            ],
            generation: 1,
            expect: &[],
        },
        Case {
            name: "a restore (the full object again) clears the tombstone",
            kind: Kind::User,
            db: member_of(Some(Removal::Soft)),
            page: vec![object("u1", json!({"displayName": "Ada", "mail": "a@x"}))],
            generation: 1,
            expect: &[r#"restore u1 {} -> {"displayName":"Ada","mail":"a@x"}"#],
        },
        Case {
            name: "a restore with changed properties is both",
            kind: Kind::User,
            db: user_db(Some(Removal::Soft), 1),
            page: vec![object("u1", json!({"mail": "b@x"}))],
            generation: 1,
            expect: &[
                r#"restore u1 {"mail":{"new":"b@x","old":"a@x"}} -> {"displayName":"Ada","mail":"b@x"}"#,
            ],
        },
        Case {
            name: "delete then restore on one page",
            kind: Kind::User,
            db: user_db(None, 1),
            page: vec![
                removed("u1", Removal::Soft),
                object("u1", json!({"displayName": "Ada"})),
            ],
            generation: 1,
            expect: &[
                "delete u1 soft Removed",
                r#"restore u1 {} -> {"displayName":"Ada","mail":"a@x"}"#,
            ],
        },
    ]);
}

#[test]
fn group_deletions_by_type() {
    let db = Db {
        objects: vec![
            (
                "g1",
                json!({"displayName": "Eng", "groupTypes": []}),
                None,
                1,
            ),
            (
                "g2",
                json!({"displayName": "M365", "groupTypes": ["Unified"]}),
                None,
                1,
            ),
        ],
        links: vec![
            ("g1", "u1", "user", 1),
            ("g1", "g2", "group", 1),
            ("g2", "u2", "user", 1),
            ("g3", "g1", "group", 1),
        ],
        ..Db::default()
    };
    run(vec![
        Case {
            // Graph reports a security group's deletion as `deleted` (no deleted items).
            name: "a security group's deletion is permanent: its memberships go, both sides",
            kind: Kind::Group,
            db: db.clone(),
            page: vec![removed("g1", Removal::Permanent)],
            generation: 1,
            expect: &[
                "delete g1 permanent Removed",
                "remove g1 u1 user Purged",
                "remove g1 g2 group Purged",
                "remove g3 g1 group Purged",
            ],
        },
        Case {
            name: "a Microsoft 365 group's deletion is soft: memberships kept for the restore",
            kind: Kind::Group,
            db: db.clone(),
            page: vec![removed("g2", Removal::Soft)],
            generation: 1,
            expect: &["delete g2 soft Removed"],
        },
        Case {
            // graph reads any reason but "deleted" (unknown, missing) as Soft.
            name: "an unknown removal reason (read as soft) keeps data",
            kind: Kind::Group,
            db: db.clone(),
            page: vec![removed("g1", Removal::Soft)],
            generation: 1,
            expect: &["delete g1 soft Removed"],
        },
        Case {
            name: "members@delta on a removed entry is ignored",
            kind: Kind::Group,
            db,
            page: vec![DirectoryObject {
                removed: Some(Removal::Soft),
                ..group("g2", json!({}), &["+u7:user"])
            }],
            generation: 1,
            expect: &["delete g2 soft Removed"],
        },
    ]);
}

#[test]
fn memberships() {
    let eng = || json!({"displayName": "Eng"});
    let stored = || Db {
        objects: vec![("g1", eng(), None, 1)],
        links: vec![("g1", "u1", "user", 1)],
        users: vec!["u5"],
        groups: vec!["g5"],
    };
    run(vec![
        Case {
            name: "initial round: additions, mixed member types",
            kind: Kind::Group,
            db: Db::default(),
            page: vec![group(
                "g1",
                eng(),
                &[
                    "+u1:user",
                    "+g2:group",
                    "+d1:device",
                    "+s1:servicePrincipal",
                ],
            )],
            generation: 1,
            expect: &[
                r#"create g1 {"displayName":"Eng"}"#,
                "add g1 u1 user",
                "add g1 g2 group",
                "add g1 d1 device",
                "add g1 s1 servicePrincipal",
            ],
        },
        Case {
            name: "a split member list: the group repeats with another slice, on one page",
            kind: Kind::Group,
            db: Db::default(),
            page: vec![
                group("g1", eng(), &["+u1:user", "+u2:user"]),
                group("g1", eng(), &["+u3:user", "+u1:user"]),
            ],
            generation: 1,
            expect: &[
                r#"create g1 {"displayName":"Eng"}"#,
                "add g1 u1 user",
                "add g1 u2 user",
                "add g1 u3 user",
            ],
        },
        Case {
            name: "a later slice on a later page adds only what is new",
            kind: Kind::Group,
            db: stored(),
            page: vec![group("g1", eng(), &["+u1:user", "+u2:user"])],
            generation: 1,
            expect: &["add g1 u2 user"],
        },
        Case {
            name: "later rounds list changes only: a removal, and no members@delta = unchanged",
            kind: Kind::Group,
            db: stored(),
            page: vec![
                group("g1", eng(), &["-u1:user", "-u9:user"]),
                object("g1", eng()),
            ],
            generation: 1,
            expect: &["remove g1 u1 user Removed"],
        },
        Case {
            name: "initial round: a stale @removed member entry matches nothing",
            kind: Kind::Group,
            db: Db::default(),
            page: vec![group("g1", eng(), &["-u1:user"])],
            generation: 1,
            expect: &[r#"create g1 {"displayName":"Eng"}"#],
        },
        Case {
            name: "added and removed on one page",
            kind: Kind::Group,
            db: stored(),
            page: vec![
                group("g1", eng(), &["+u2:user"]),
                group("g1", eng(), &["-u2:user"]),
            ],
            generation: 1,
            expect: &["add g1 u2 user", "remove g1 u2 user Removed"],
        },
        Case {
            name: "a new full round stamps stored links as seen (and fixes their type)",
            kind: Kind::Group,
            db: stored(),
            page: vec![group("g1", eng(), &["+u1:user", "+u1:user"])],
            generation: 2,
            expect: &["seen g1", "seen-member g1 u1 user"],
        },
        Case {
            name: "a member's type can change",
            kind: Kind::Group,
            db: stored(),
            page: vec![group("g1", eng(), &["+u1:group"])],
            generation: 1,
            expect: &["seen-member g1 u1 group"],
        },
        Case {
            name: "member type inference: known user, known group, group on this page, unknown",
            kind: Kind::Group,
            db: stored(),
            page: vec![
                object("g7", json!({"displayName": "Seven"})),
                group(
                    "g1",
                    eng(),
                    &["+u5:unknown", "+g5:unknown", "+g7:unknown", "+x1:unknown"],
                ),
            ],
            generation: 1,
            expect: &[
                r#"create g7 {"displayName":"Seven"}"#,
                "add g1 u5 user",
                "add g1 g5 group",
                "add g1 g7 group",
                "add g1 x1 unknown",
            ],
        },
        Case {
            name: "a purge takes the memberships the same page added",
            kind: Kind::Group,
            db: stored(),
            page: vec![
                group("g1", eng(), &["+u2:user"]),
                removed("g1", Removal::Permanent),
            ],
            generation: 1,
            expect: &[
                "add g1 u2 user",
                "delete g1 permanent Removed",
                "remove g1 u1 user Purged",
                "remove g1 u2 user Purged",
            ],
        },
        Case {
            name: "a purge skips what the page already removed",
            kind: Kind::Group,
            db: stored(),
            page: vec![
                group("g1", eng(), &["-u1:user"]),
                removed("g1", Removal::Permanent),
            ],
            generation: 1,
            expect: &["remove g1 u1 user Removed", "delete g1 permanent Removed"],
        },
    ]);
}

#[test]
fn wanted_reads_what_the_page_names() {
    let page = vec![
        object("u1", json!({})),
        removed("u2", Removal::Permanent),
        removed("u3", Removal::Soft),
        group("g1", json!({}), &["+u1:user", "-u4:unknown"]),
        group("g1", json!({}), &["+u5:user"]),
    ];
    let w = wanted(&page);
    assert_eq!(w.objects, ["u1", "u2", "u3", "g1"]);
    assert_eq!(w.purged, ["u2"]);
    assert_eq!(w.links, [("g1", vec!["u1", "u4", "u5"])]);
    assert_eq!(w.untyped, ["u4"]);
}

#[test]
fn reconciliation_marks_the_unreported_deleted() {
    let unseen = Unseen {
        objects: vec![("g4".into(), Some("Old".into()))],
        links: vec![("g1".into(), "u3".into(), "user".into())],
    };
    let got: Vec<String> = reconcile(Kind::Group, unseen).iter().map(show).collect();
    assert_eq!(
        got,
        [
            "delete g4 soft NotReported",
            "remove g1 u3 user NotReported"
        ]
    );
    assert!(reconcile(Kind::User, Unseen::default()).is_empty());
}

#[test]
fn tally_counts_what_changes() {
    let db = Db {
        objects: vec![
            ("u1", json!({"displayName": "A"}), None, 1),
            ("u2", json!({"displayName": "B"}), Some(Removal::Soft), 1),
            ("u3", json!({"displayName": "C"}), Some(Removal::Soft), 1),
            ("u4", json!({"displayName": "D"}), None, 1),
        ],
        ..Db::default()
    };
    let page_objects = vec![
        object("u0", json!({"displayName": "Z"})),
        object("u1", json!({"displayName": "A2"})),
        object("u2", json!({"displayName": "B"})),
        removed("u3", Removal::Permanent),
        removed("u4", Removal::Soft),
    ];
    let changes = page(
        Kind::User,
        &mut page_objects.clone(),
        db.lookup(&page_objects),
        2,
    );
    let mut counts = Counts::default();
    tally(&changes, &mut counts);
    assert_eq!(
        counts,
        Counts {
            users_created: 1,
            users_updated: 1,
            users_restored: 1,
            users_deleted: 1,
            ..Counts::default()
        }
    );
}

#[test]
fn merge_rules() {
    #[track_caller]
    fn check(stored: Value, incoming: Value, merged: Value, changes: Value) {
        let (m, c) = merge(&map(stored).into(), &map(incoming).into());
        assert_eq!(Value::Object(m.to_map()), merged, "merged");
        assert_eq!(Value::Object(c), changes, "changes");
    }
    check(
        json!({"a": "x", "b": "y"}),
        json!({"a": "x"}),
        json!({"a": "x", "b": "y"}),
        json!({}),
    );
    check(
        json!({"a": "x", "b": "y"}),
        json!({"b": null}),
        json!({"a": "x", "b": null}),
        json!({"b": {"old": "y", "new": null}}),
    );
    check(
        json!({"a": "x"}),
        json!({"a": "z"}),
        json!({"a": "z"}),
        json!({"a": {"old": "x", "new": "z"}}),
    );
}

#[test]
fn held_deletions_take_their_purges_with_them() {
    let db = Db {
        objects: vec![
            ("u1", json!({}), None, 1),
            ("u2", json!({}), Some(Removal::Soft), 1),
        ],
        links: vec![("g1", "u1", "user", 1), ("g1", "u2", "user", 1)],
        ..Db::default()
    };
    let objects = vec![
        removed("u1", Removal::Permanent),
        removed("u2", Removal::Permanent),
        object("u3", json!({})),
    ];
    let changes = page(Kind::User, &mut objects.clone(), db.lookup(&objects), 1);
    assert_eq!(deletions(&changes, Kind::User), 1, "u2 was deleted already");
    assert_eq!(deletions(&changes, Kind::Group), 0);
    let kept: Vec<String> = without_deletions(changes, Kind::User)
        .iter()
        .map(show)
        .collect();
    assert_eq!(
        kept,
        [
            "delete u2 permanent Removed (was deleted)",
            "create u3 {}",
            "remove g1 u2 user Purged",
        ]
    );
}

mod snapshot;

/// A created object's properties move into its change; everything else on the page stays.
#[test]
fn planning_takes_only_the_properties_of_created_objects() {
    let mut objects = vec![
        object("u9", json!({"displayName": "New"})),
        object("u1", json!({"displayName": "Ada", "mail": "b@x"})),
    ];
    let before = objects.clone();
    let changes = page(
        Kind::User,
        &mut objects,
        user_db(None, 1).lookup(&before),
        1,
    );
    assert!(
        matches!(&changes[0], Change::Create { attributes, .. } if attributes["displayName"] == "New")
    );
    assert!(objects[0].props.is_empty(), "moved into the Create change");
    assert_eq!(objects[0].id, "u9");
    assert_eq!(
        objects[1], before[1],
        "an updated object's entry is only read"
    );
}
