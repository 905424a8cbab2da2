//! The rules of syncing, as pure functions: a delta page (or the end of a full round) and
//! the stored rows it touches go in, a list of [`Change`]s comes out. No SQL, no HTTP, no
//! clock; `store` applies the list (graph-protocol.md 3.7-3.8, 8.1).

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde_json::{Map, Value, json};

use crate::graph::{self, DirectoryObject, MemberChange, Props, Removal, UNTYPED};
use crate::store::{
    Change, Counts, Kind, Known, KnownLink, Lookup, Reason, StoredLink, Unseen, Wanted,
};

/// The stored rows a page needs: every object it names, the memberships its
/// `members@delta` entries name, the memberships of what it deletes permanently, and the
/// kind of untyped members.
pub fn wanted(objects: &[DirectoryObject]) -> Wanted<'_> {
    let mut wanted = Wanted::default();
    let mut seen = HashSet::new();
    let mut links: HashMap<&str, usize> = HashMap::new();
    for object in objects {
        if seen.insert(object.id.as_str()) {
            wanted.objects.push(object.id.as_str());
        }
        match (object.removed, &object.members) {
            (Some(Removal::Permanent), _) => wanted.purged.push(object.id.as_str()),
            (Some(Removal::Soft), _) | (None, None) => {}
            (None, Some(members)) => {
                let at = *links.entry(object.id.as_str()).or_insert_with(|| {
                    wanted.links.push((object.id.as_str(), Vec::new()));
                    wanted.links.len() - 1
                });
                for member in members {
                    wanted.links[at].1.push(&*member.id);
                    if member.kind == UNTYPED {
                        wanted.untyped.push(&*member.id);
                    }
                }
            }
        }
    }
    wanted
}

/// Plans one page of a round of `kind` whose full-round number is `generation`.
///
/// Objects are taken in page order, each seeing what the ones before it planned, so
/// repeats within a page, and a group whose member list is split over several entries,
/// plan as they would one by one.
///
/// The properties of the objects it creates are taken out of `objects`, moved into their
/// changes rather than copied (a first import creates 110,000); ids, removals and members
/// stay as they were.
pub fn page(
    kind: Kind,
    objects: &mut [DirectoryObject],
    mut lookup: Lookup,
    generation: i64,
) -> Vec<Change> {
    let stored = std::mem::take(&mut lookup.links);
    let purged = std::mem::take(&mut lookup.purged_links);
    let mut planner = Planner::new(kind, generation, &stored, lookup);
    for object in objects {
        planner.object(object);
    }
    planner.purge(purged);
    planner.changes
}

/// The stored rows a page of `group`'s member list needs: the group (stored, since it was
/// listed first), its links to these members, the kind of untyped members.
pub fn wanted_members<'a>(group: &'a str, members: &'a [MemberChange]) -> Wanted<'a> {
    Wanted {
        objects: vec![group],
        links: vec![(group, members.iter().map(|m| &*m.id).collect())],
        purged: Vec::new(),
        untyped: members
            .iter()
            .filter(|m| m.kind == UNTYPED)
            .map(|m| &*m.id)
            .collect(),
    }
}

/// Plans one page of `group`'s member list read by a snapshot of round `generation`: new
/// links are added, stored ones stamped as seen (reconciliation removes the rest), exactly
/// as a full delta round's `members@delta` would.
pub fn listed_members(
    group: &str,
    members: &[MemberChange],
    mut lookup: Lookup,
    generation: i64,
) -> Vec<Change> {
    let stored = std::mem::take(&mut lookup.links);
    let mut planner = Planner::new(Kind::Group, generation, &stored, lookup);
    for member in members.iter().filter(|m| !m.removed) {
        planner.membership(group, member);
    }
    planner.changes
}

/// Plans the re-read of a group the catch-up round reported: its stored links are made
/// exactly the `listed` ones (3.11 (b)), except the hidden links of soft-deleted users,
/// which member lists never show and a restore brings back (3.8).
pub fn recheck(group: &str, listed: &[MemberChange], stored: &[StoredLink]) -> Vec<Change> {
    let by_member: HashMap<&str, &StoredLink> =
        stored.iter().map(|l| (l.member.as_str(), l)).collect();
    let mut changes = Vec::new();
    let mut seen = HashSet::new();
    let group: Arc<str> = group.into();
    for member in listed.iter().filter(|m| !m.removed) {
        if !seen.insert(&*member.id) {
            continue;
        }
        let (group, id) = (group.clone(), member.id.clone());
        match by_member.get(&*member.id) {
            None => changes.push(Change::AddMember {
                group,
                member: id,
                member_type: member.kind.clone(),
            }),
            Some(link) if link.member_type != member.kind && member.kind != UNTYPED => {
                changes.push(Change::SeenMember {
                    group,
                    member: id,
                    member_type: member.kind.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for link in stored {
        if !link.hidden && !seen.contains(link.member.as_str()) {
            changes.push(Change::RemoveMember {
                group: group.clone(),
                member: link.member.as_str().into(),
                member_type: link.member_type.clone().into(),
                reason: Reason::NotReported,
            });
        }
    }
    changes
}

/// Plans the end of a complete full round: whatever it did not report is gone from the
/// tenant. Whether it still sits in deleted items is unknown, so it is marked restorable
/// (soft); memberships the round did not report go.
pub fn reconcile(kind: Kind, unseen: Unseen) -> Vec<Change> {
    let objects = unseen.objects.into_iter().map(|(id, name)| Change::Delete {
        kind,
        id,
        name,
        removal: Removal::Soft,
        reason: Reason::NotReported,
        was_live: true,
    });
    let links = unseen
        .links
        .into_iter()
        .map(|(group, member, member_type)| Change::RemoveMember {
            group: group.into(),
            member: member.into(),
            member_type: member_type.into(),
            reason: Reason::NotReported,
        });
    objects.chain(links).collect()
}

/// Plans the end of a complete snapshot: what it did not list is gone, as after a full
/// round. A link its member lists did not show is not removed yet: the member may have been
/// deleted (soft) after the users were listed, which member lists hide and which only the
/// catch-up round tells. Its group is re-read after that round instead ([`recheck`], which
/// keeps the hidden links of soft-deleted users). Returns the changes and those groups.
pub fn reconcile_snapshot(kind: Kind, unseen: Unseen) -> (Vec<Change>, Vec<String>) {
    let mut groups: Vec<String> = unseen.links.iter().map(|(g, _, _)| g.clone()).collect();
    groups.sort();
    groups.dedup();
    let objects = Unseen {
        objects: unseen.objects,
        links: Vec::new(),
    };
    (reconcile(kind, objects), groups)
}

/// How many objects of `kind` the changes mark deleted (what the deletion guard counts):
/// live ones only, a soft deletion made permanent is no new deletion.
pub fn deletions(changes: &[Change], kind: Kind) -> u64 {
    changes
        .iter()
        .filter(|c| matches!(c, Change::Delete { kind: k, was_live: true, .. } if *k == kind))
        .count() as u64
}

/// The changes without the deletions `deletions` counts, nor the memberships their purge
/// would remove: held, those objects stay as they are.
pub fn without_deletions(changes: Vec<Change>, kind: Kind) -> Vec<Change> {
    let held: HashSet<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Delete {
                kind: k,
                id,
                was_live: true,
                ..
            } if *k == kind => Some(id.clone()),
            _ => None,
        })
        .collect();
    changes
        .into_iter()
        .filter(|c| match c {
            Change::Delete {
                id,
                was_live: true,
                kind: k,
                ..
            } => !(*k == kind && held.contains(id)),
            Change::RemoveMember {
                group,
                member,
                reason: Reason::Purged,
                ..
            } => !held.contains(&**group) && !held.contains(&**member),
            _ => true,
        })
        .collect()
}

/// Adds what `changes` do to `counts`.
pub fn tally(changes: &[Change], counts: &mut Counts) {
    for change in changes {
        match change {
            Change::Create { kind, .. } => *by_kind(counts, *kind).0 += 1,
            Change::Update {
                kind,
                diff,
                restored,
                ..
            } => {
                let (_, updated, _, restored_count) = by_kind(counts, *kind);
                if !diff.is_empty() {
                    *updated += 1;
                }
                if *restored {
                    *restored_count += 1;
                }
            }
            Change::Delete {
                kind,
                was_live: true,
                ..
            } => *by_kind(counts, *kind).2 += 1,
            Change::AddMember { .. } => counts.members_added += 1,
            Change::RemoveMember { .. } => counts.members_removed += 1,
            Change::Seen { .. } | Change::SeenMember { .. } | Change::Delete { .. } => {}
        }
    }
}

/// (created, updated, deleted, restored) of `kind`.
fn by_kind(c: &mut Counts, kind: Kind) -> (&mut u64, &mut u64, &mut u64, &mut u64) {
    match kind {
        Kind::User => (
            &mut c.users_created,
            &mut c.users_updated,
            &mut c.users_deleted,
            &mut c.users_restored,
        ),
        Kind::Group => (
            &mut c.groups_created,
            &mut c.groups_updated,
            &mut c.groups_deleted,
            &mut c.groups_restored,
        ),
    }
}

struct Planner<'p> {
    kind: Kind,
    generation: i64,
    /// Stored objects, as the changes planned so far leave them.
    objects: HashMap<String, Tracked>,
    /// Memberships the page names, keyed by ids borrowed from the page and the lookup (a
    /// first import plans a million of them): `Some` while they exist, `None` once planned
    /// away. A pair that is not here does not exist (the lookup read every pair the page
    /// names).
    links: HashMap<(&'p str, &'p str), Option<Link<'p>>>,
    users: HashSet<String>,
    groups: HashSet<String>,
    /// Objects deleted permanently on this page, whose memberships go at its end.
    purged: Vec<String>,
    changes: Vec<Change>,
    /// The group of the last membership planned, shared by its changes.
    group: Option<Arc<str>>,
}

/// An object as the planner tracks it: as stored (and changed so far), or created by the
/// change at this index of the plan.
#[derive(Debug)]
enum Tracked {
    Known(Known),
    Created(usize),
}

/// The stored links as the planner tracks them, borrowed from the lookup.
fn borrowed_links(
    stored: &HashMap<(String, String), KnownLink>,
) -> HashMap<(&str, &str), Option<Link<'_>>> {
    stored
        .iter()
        .map(|((group, member), link)| {
            let link = Link {
                member_type: &link.member_type,
                seen_generation: link.seen_generation,
            };
            ((group.as_str(), member.as_str()), Some(link))
        })
        .collect()
}

/// A membership as the planner tracks it ([`KnownLink`](crate::store::KnownLink), borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link<'p> {
    member_type: &'p str,
    seen_generation: i64,
}

impl<'p> Planner<'p> {
    /// A planner over `lookup`, whose links were taken out into `stored` (borrowed).
    fn new(
        kind: Kind,
        generation: i64,
        stored: &'p HashMap<(String, String), KnownLink>,
        lookup: Lookup,
    ) -> Planner<'p> {
        Planner {
            kind,
            generation,
            objects: lookup
                .objects
                .into_iter()
                .map(|(id, known)| (id, Tracked::Known(known)))
                .collect(),
            links: borrowed_links(stored),
            users: lookup.users,
            groups: lookup.groups,
            purged: Vec::new(),
            changes: Vec::new(),
            group: None,
        }
    }

    fn object(&mut self, object: &'p mut DirectoryObject) {
        let DirectoryObject {
            id,
            removed,
            props,
            members,
        } = object;
        // Only the properties are taken; the rest is borrowed for the plan's life.
        let (id, members): (&'p String, &'p Option<Vec<MemberChange>>) = (id, members);
        match *removed {
            Some(removal) => self.remove(id, removal),
            None => {
                self.upsert(id, props);
                for member in members.iter().flatten() {
                    self.membership(id, member);
                }
            }
        }
    }

    fn upsert(&mut self, id: &str, props: &mut Props) {
        let (kind, id, generation) = (self.kind, id.to_owned(), self.generation);
        let Some(stored) = self.known(&id) else {
            // A property new to us that is null was never set, as far as we know: absent
            // (SCHEMA.md), whether Graph leaves it out (delta) or lists it as null (`/users`).
            let mut attributes = std::mem::take(props);
            attributes.retain(|_, value| !value.is_null());
            self.objects
                .insert(id.clone(), Tracked::Created(self.changes.len()));
            self.changes.push(Change::Create {
                kind,
                id,
                attributes,
            });
            return;
        };
        let (merged, diff) = merge(&stored.attributes, props);
        let restored = stored.deletion.is_some();
        let change = if restored || merged != stored.attributes {
            stored.attributes = merged.clone();
            Some(Change::Update {
                kind,
                id,
                attributes: merged,
                diff,
                restored,
            })
        } else if stored.seen_generation < generation {
            Some(Change::Seen { kind, id })
        } else {
            None
        };
        stored.deletion = None;
        stored.seen_generation = generation;
        self.changes.extend(change);
    }

    /// The stored object `id` as the changes planned so far leave it. One this page
    /// created is tracked by its change alone until it appears again (a first import
    /// creates 110,000, each named once: a second copy of each one's attributes cost an
    /// allocation per property).
    fn known(&mut self, id: &str) -> Option<&mut Known> {
        let tracked = self.objects.get_mut(id)?;
        if let Tracked::Created(at) = *tracked {
            let Some(Change::Create { attributes, .. }) = self.changes.get(at) else {
                unreachable!("a created object is tracked by its Create change");
            };
            *tracked = Tracked::Known(Known {
                attributes: attributes.clone(),
                deletion: None,
                seen_generation: self.generation,
            });
        }
        match tracked {
            Tracked::Known(known) => Some(known),
            Tracked::Created(_) => None,
        }
    }

    fn remove(&mut self, id: &str, removal: Removal) {
        let kind = self.kind;
        let Some(stored) = self.known(id) else {
            return; // a removal for an object we never had is a no-op (3.7)
        };
        // Replays change nothing, and a permanent deletion is never softened.
        let already = matches!(
            (stored.deletion, removal),
            (Some(Removal::Permanent), _) | (Some(Removal::Soft), Removal::Soft)
        );
        if !already {
            let delete = Change::Delete {
                kind,
                id: id.to_owned(),
                name: display_name(&stored.attributes),
                removal,
                reason: Reason::Removed,
                was_live: stored.deletion.is_none(),
            };
            stored.deletion = Some(removal);
            self.changes.push(delete);
        }
        // Soft-deleted objects keep their memberships, hidden by the tombstone, because
        // Graph will not report them again on restore (3.8). Permanent ones lose them.
        if removal == Removal::Permanent {
            self.purged.push(id.to_owned());
        }
    }

    /// `group` as the changes hold it: one copy for all of a group's memberships on the
    /// page, not one each (a first import plans a million).
    fn shared(&mut self, group: &str) -> Arc<str> {
        match &self.group {
            Some(shared) if **shared == *group => shared.clone(),
            _ => self.group.insert(group.into()).clone(),
        }
    }

    fn membership(&mut self, group: &'p str, member: &'p MemberChange) {
        let key = (group, &*member.id);
        let existing = self.links.get(&key).copied().flatten();
        if member.removed {
            if let Some(link) = existing {
                let group = self.shared(group);
                self.changes.push(Change::RemoveMember {
                    group,
                    member: member.id.clone(),
                    member_type: graph::member_type(link.member_type),
                    reason: Reason::Removed,
                });
                self.links.insert(key, None);
            }
            return;
        }
        let link = Link {
            member_type: self.member_type(member),
            seen_generation: self.generation,
        };
        let (group, member, member_type) = match existing {
            Some(old) if old == link => return,
            _ => (
                self.shared(group),
                member.id.clone(),
                graph::member_type(link.member_type),
            ),
        };
        self.changes.push(match existing {
            None => Change::AddMember {
                group,
                member,
                member_type,
            },
            Some(_) => Change::SeenMember {
                group,
                member,
                member_type,
            },
        });
        self.links.insert(key, Some(link));
    }

    /// The member's type from its `@odata.type`; without one (not seen from Graph, but
    /// cheap to survive), from what the database knows of the id.
    fn member_type(&self, member: &'p MemberChange) -> &'p str {
        if member.kind != UNTYPED {
            return &member.kind;
        }
        if self.users.contains(&*member.id) {
            Kind::User.entity()
        } else if self.groups.contains(&*member.id)
            || (self.kind == Kind::Group && self.objects.contains_key(&*member.id))
        {
            Kind::Group.entity()
        } else {
            &member.kind
        }
    }

    /// Drops the memberships of the objects this page deleted permanently: the stored ones
    /// the page left in place, and those the page itself added.
    fn purge(&mut self, stored: Vec<(String, String, String)>) {
        if self.purged.is_empty() {
            return;
        }
        let purged: HashSet<&str> = self.purged.iter().map(String::as_str).collect();
        let involved =
            |group: &str, member: &str| purged.contains(group) || purged.contains(member);
        let mut gone: Vec<(String, String, String)> = Vec::new();
        let mut taken = HashSet::new();
        for (group, member, member_type) in stored {
            let planned = self.links.get(&(group.as_str(), member.as_str()));
            if !involved(&group, &member) || matches!(planned, Some(None)) {
                continue;
            }
            let member_type = match planned {
                Some(Some(link)) => link.member_type.to_owned(),
                _ => member_type,
            };
            if taken.insert((group.clone(), member.clone())) {
                gone.push((group, member, member_type));
            }
        }
        let mut added: Vec<(String, String, String)> = self
            .links
            .iter()
            .filter_map(|(&(group, member), link)| {
                let link = link.as_ref()?;
                let key = (group.to_owned(), member.to_owned());
                (involved(group, member) && !taken.contains(&key))
                    .then(|| (key.0, key.1, link.member_type.to_owned()))
            })
            .collect();
        added.sort();
        gone.extend(added);
        for (group, member, member_type) in gone {
            self.changes.push(Change::RemoveMember {
                group: group.into(),
                member: member.into(),
                member_type: member_type.into(),
                reason: Reason::Purged,
            });
        }
    }
}

/// The name an operator knows an object by.
pub fn display_name(attributes: &Props) -> Option<String> {
    ["displayName", "userPrincipalName"]
        .iter()
        .find_map(|key| attributes.get(key)?.as_str().map(str::to_owned))
}

/// Merges a delta payload into stored attributes: absent = unchanged, null = cleared, a
/// value = set. Returns the merged attributes and the changes as
/// `{"property": {"old": ..., "new": ...}}`.
pub fn merge(stored: &Props, incoming: &Props) -> (Props, Map<String, Value>) {
    let mut merged = stored.clone();
    let mut changes = Map::new();
    for (key, new) in incoming.iter() {
        let old = stored.get(key);
        let same = match old {
            Some(old) => old == new,
            None => new.is_null(),
        };
        if same {
            // Null for a property never set keeps it absent: a snapshot's lists send every
            // selected property, and must not rewrite what delta stored.
            if old.is_some() {
                merged.insert(key.to_owned(), new.clone());
            }
            continue;
        }
        changes.insert(
            key.to_owned(),
            json!({ "old": old.cloned().unwrap_or(Value::Null), "new": new }),
        );
        merged.insert(key.to_owned(), new.clone());
    }
    (merged, changes)
}

#[cfg(test)]
mod tests;
