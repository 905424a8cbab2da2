//! The simulated directory: users, groups, memberships, and the change history that delta
//! rounds are answered from.
//!
//! Every mutation takes the next change sequence number (one per call, shared by everything
//! the call touches). Each collection keeps an append-only change log with one entry per
//! touch; an entry records the sequence number at which it was superseded by the object's
//! next touch. A round covering `(since, until]` therefore reports each changed object once
//! (its last entry at or before `until`) by a binary search plus a forward scan, without ever
//! looking at unchanged objects. Group membership has the same kind of log per group.
//!
//! Mutators panic on misuse (unknown id, updating a deleted object, unknown property name):
//! they are test helpers and a loud failure beats a silently wrong scenario.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::schema::ObjectType;

/// Kinds of directory objects that can be group members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberKind {
    /// `#microsoft.graph.user`
    User,
    /// `#microsoft.graph.group` (a nested group)
    Group,
    /// `#microsoft.graph.device`
    Device,
    /// `#microsoft.graph.servicePrincipal`
    ServicePrincipal,
    /// `#microsoft.graph.orgContact`
    OrgContact,
}

impl MemberKind {
    /// The `@odata.type` Graph puts on a `members@delta` entry of this kind.
    pub fn odata_type(self) -> &'static str {
        match self {
            MemberKind::User => "#microsoft.graph.user",
            MemberKind::Group => "#microsoft.graph.group",
            MemberKind::Device => "#microsoft.graph.device",
            MemberKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
            MemberKind::OrgContact => "#microsoft.graph.orgContact",
        }
    }
}

/// Lifecycle state of a user or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectState {
    /// Exists and is listed.
    Live,
    /// In deleted items (restorable); reported as `@removed: changed`.
    SoftDeleted,
    /// Permanently gone; reported as `@removed: deleted`.
    Purged,
}

/// `superseded` value of a log entry that is still the latest for its object.
pub(super) const LATEST: u64 = u64::MAX;

/// One set property. Never-set properties have no `Prop` at all; cleared ones hold `Null`.
pub(super) struct Prop {
    pub name: u8,
    pub value: Value,
    /// Sequence number of the last change (for `Prefer: return=minimal`).
    pub changed: u64,
}

/// One membership link (the group side is implicit).
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub key: u32,
    pub kind: MemberKind,
}

/// One entry of a group's membership history.
pub(super) struct MemberChange {
    pub seq: u64,
    pub member: Member,
    pub added: bool,
    pub superseded: u64,
}

/// One entry of a collection's change log: object `index` was touched at `seq`.
pub(super) struct LogEntry {
    pub seq: u64,
    pub index: u32,
    pub superseded: u64,
}

/// A user or a group. Group-only and user-only parts stay empty (and unallocated) on the
/// other type.
pub(super) struct Object {
    /// Interned id (see `Tenant::id`).
    pub key: u32,
    /// Sorted by property number.
    pub props: Vec<Prop>,
    pub state: ObjectState,
    pub created: u64,
    /// Sequence number of the last restore from deleted items (0 if never).
    pub restored: u64,
    pub last_change: u64,
    log_pos: usize,
    /// Current members, sorted by key so a page can resume after the last key it sent.
    pub members: Vec<Member>,
    pub member_log: Vec<MemberChange>,
    member_last: HashMap<u32, usize>,
    pub manager: Option<u32>,
    /// The manager replaced by the last manager change (reported as removed).
    pub manager_removed: Option<u32>,
    pub manager_changed: u64,
}

impl Object {
    fn new(key: u32, props: Vec<Prop>, seq: u64, log_pos: usize) -> Object {
        Object {
            key,
            props,
            state: ObjectState::Live,
            created: seq,
            restored: 0,
            last_change: seq,
            log_pos,
            members: Vec::new(),
            member_log: Vec::new(),
            member_last: HashMap::new(),
            manager: None,
            manager_removed: None,
            manager_changed: 0,
        }
    }

    pub(super) fn member_pos(&self, key: u32) -> Result<usize, usize> {
        self.members.binary_search_by_key(&key, |m| m.key)
    }

    fn log_member(&mut self, member: Member, added: bool, seq: u64) {
        if let Some(&previous) = self.member_last.get(&member.key) {
            self.member_log[previous].superseded = seq;
        }
        self.member_last.insert(member.key, self.member_log.len());
        self.member_log.push(MemberChange {
            seq,
            member,
            added,
            superseded: LATEST,
        });
    }
}

/// All users or all groups, in creation order, plus their change log.
#[derive(Default)]
pub(super) struct Collection {
    pub objects: Vec<Object>,
    by_key: HashMap<u32, u32>,
    pub log: Vec<LogEntry>,
}

impl Collection {
    pub(super) fn index_of(&self, key: u32) -> Option<usize> {
        self.by_key.get(&key).map(|&i| i as usize)
    }

    pub(super) fn push(&mut self, key: u32, props: Vec<Prop>, seq: u64) -> usize {
        let index = self.objects.len();
        let index32 = u32::try_from(index).expect("fewer than 2^32 objects");
        self.log.push(LogEntry {
            seq,
            index: index32,
            superseded: LATEST,
        });
        self.objects
            .push(Object::new(key, props, seq, self.log.len() - 1));
        self.by_key.insert(key, index32);
        index
    }

    /// Records that object `index` changed at `seq` (once per mutation).
    fn touch(&mut self, index: usize, seq: u64) {
        let object = &mut self.objects[index];
        if object.last_change == seq {
            return;
        }
        self.log[object.log_pos].superseded = seq;
        object.log_pos = self.log.len();
        object.last_change = seq;
        self.log.push(LogEntry {
            seq,
            index: index as u32,
            superseded: LATEST,
        });
    }
}

/// The simulated Entra tenant. Mutate it between (or during) delta rounds through
/// `Sim::tenant()`.
#[derive(Default)]
pub struct Tenant {
    seq: u64,
    ids: Vec<Box<str>>,
    keys: HashMap<Box<str>, u32>,
    pub(super) users: Collection,
    pub(super) groups: Collection,
}

impl Tenant {
    /// An empty tenant.
    pub fn new() -> Tenant {
        Tenant::default()
    }

    /// Current change sequence number (grows by one per mutation).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The id string of interned key `key`.
    pub(super) fn id(&self, key: u32) -> &str {
        &self.ids[key as usize]
    }

    /// Whether a member is live: soft-deleted users and groups keep their links, which the
    /// plain member lists (and, when asked, full delta rounds) leave out (notes 3.11).
    pub(super) fn member_is_live(&self, member: &Member) -> bool {
        let collection = match member.kind {
            MemberKind::User => &self.users,
            MemberKind::Group => &self.groups,
            _ => return true,
        };
        collection
            .index_of(member.key)
            .is_none_or(|i| collection.objects[i].state == ObjectState::Live)
    }

    pub(super) fn key(&self, id: &str) -> Option<u32> {
        self.keys.get(id).copied()
    }

    pub(super) fn intern(&mut self, id: &str) -> u32 {
        if let Some(&key) = self.keys.get(id) {
            return key;
        }
        let key = u32::try_from(self.ids.len()).expect("fewer than 2^32 ids");
        self.ids.push(id.into());
        self.keys.insert(id.into(), key);
        key
    }

    pub(super) fn collection(&self, ty: ObjectType) -> &Collection {
        match ty {
            ObjectType::User => &self.users,
            ObjectType::Group => &self.groups,
        }
    }

    pub(super) fn collection_mut(&mut self, ty: ObjectType) -> &mut Collection {
        match ty {
            ObjectType::User => &mut self.users,
            ObjectType::Group => &mut self.groups,
        }
    }

    /// Object index of `id` in `ty`'s collection, in any state.
    fn find(&self, ty: ObjectType, id: &str) -> Option<usize> {
        self.collection(ty).index_of(self.key(id)?)
    }

    fn object(&self, ty: ObjectType, id: &str) -> Option<&Object> {
        self.find(ty, id).map(|i| &self.collection(ty).objects[i])
    }

    /// Index of `id`, which must exist and be in `state`; panics otherwise (test misuse).
    fn expect(&self, ty: ObjectType, id: &str, state: ObjectState, action: &str) -> usize {
        let what = ty.segment();
        let Some(index) = self.find(ty, id) else {
            panic!("sim: {action}: no object '{id}' in {what}");
        };
        let actual = self.collection(ty).objects[index].state;
        assert!(
            actual == state,
            "sim: {action}: '{id}' in {what} is {actual:?}, expected {state:?}"
        );
        index
    }

    // ----- users -----

    /// Creates a user. `props` is a JSON object of user properties (absent = never set).
    pub fn add_user(&mut self, id: &str, props: Value) {
        self.create(ObjectType::User, id, props);
    }

    /// Changes user properties; a key with `null` clears the property.
    pub fn update_user(&mut self, id: &str, changes: Value) {
        self.update(ObjectType::User, id, changes);
    }

    /// Moves a user to deleted items (`@removed: changed`); memberships are kept and not
    /// reported as removed.
    pub fn soft_delete_user(&mut self, id: &str) {
        let index = self.expect(ObjectType::User, id, ObjectState::Live, "soft_delete_user");
        let seq = self.next_seq();
        self.users.objects[index].state = ObjectState::SoftDeleted;
        self.users.touch(index, seq);
    }

    /// Restores a soft-deleted user; the next users round lists it in full, unannotated.
    pub fn restore_user(&mut self, id: &str) {
        let index = self.expect(
            ObjectType::User,
            id,
            ObjectState::SoftDeleted,
            "restore_user",
        );
        self.restore(ObjectType::User, index);
    }

    /// Deletes a user permanently (live or soft-deleted): `@removed: deleted`, and removal of
    /// its memberships (and of it as anyone's manager) reported by the next rounds.
    pub fn purge_user(&mut self, id: &str) {
        let Some(index) = self.find(ObjectType::User, id) else {
            panic!("sim: purge_user: no user '{id}'");
        };
        let seq = self.next_seq();
        let key = self.purge_object(ObjectType::User, index, seq);
        self.remove_from_all_groups(key, seq);
        self.clear_manager_references(key, seq);
    }

    /// Sets or clears a user's manager (tracked as `manager@delta` when `manager` is selected).
    pub fn set_manager(&mut self, user: &str, manager: Option<&str>) {
        let index = self.expect(ObjectType::User, user, ObjectState::Live, "set_manager");
        let manager = manager.map(|m| self.intern(m));
        if self.users.objects[index].manager == manager {
            return;
        }
        let seq = self.next_seq();
        let object = &mut self.users.objects[index];
        object.manager_removed = object.manager.filter(|old| Some(*old) != manager);
        object.manager = manager;
        object.manager_changed = seq;
        self.users.touch(index, seq);
    }

    // ----- groups -----

    /// Creates a group. `props` is a JSON object of group properties (absent = never set);
    /// `groupTypes` containing `"Unified"` makes it a Microsoft 365 group (soft-deletable).
    pub fn add_group(&mut self, id: &str, props: Value) {
        self.create(ObjectType::Group, id, props);
    }

    /// Changes group properties; a key with `null` clears the property.
    pub fn update_group(&mut self, id: &str, changes: Value) {
        self.update(ObjectType::Group, id, changes);
    }

    /// Deletes a group: a Microsoft 365 group goes to deleted items (`@removed: changed`,
    /// restorable); any other group is deleted permanently (`@removed: deleted`).
    pub fn delete_group(&mut self, id: &str) {
        let index = self.expect(ObjectType::Group, id, ObjectState::Live, "delete_group");
        if !self.is_unified(index) {
            self.purge_group(id);
            return;
        }
        let seq = self.next_seq();
        self.groups.objects[index].state = ObjectState::SoftDeleted;
        self.groups.touch(index, seq);
    }

    /// Restores a soft-deleted Microsoft 365 group, members included.
    pub fn restore_group(&mut self, id: &str) {
        let index = self.expect(
            ObjectType::Group,
            id,
            ObjectState::SoftDeleted,
            "restore_group",
        );
        self.restore(ObjectType::Group, index);
    }

    /// Deletes a group permanently; groups that had it as a member report its removal.
    pub fn purge_group(&mut self, id: &str) {
        let Some(index) = self.find(ObjectType::Group, id) else {
            panic!("sim: purge_group: no group '{id}'");
        };
        let seq = self.next_seq();
        let key = self.purge_object(ObjectType::Group, index, seq);
        let group = &mut self.groups.objects[index];
        group.members = Vec::new();
        group.member_log = Vec::new();
        group.member_last = HashMap::new();
        self.remove_from_all_groups(key, seq);
    }

    /// Adds a direct member to a live group (no-op if it is already a member).
    pub fn add_member(&mut self, group: &str, member: &str, kind: MemberKind) {
        let index = self.expect(ObjectType::Group, group, ObjectState::Live, "add_member");
        assert!(
            group != member,
            "sim: add_member: a group can't contain itself"
        );
        let key = self.intern(member);
        let Err(pos) = self.groups.objects[index].member_pos(key) else {
            return;
        };
        let seq = self.next_seq();
        let member = Member { key, kind };
        let object = &mut self.groups.objects[index];
        object.members.insert(pos, member);
        object.log_member(member, true, seq);
        self.groups.touch(index, seq);
    }

    /// Removes a direct member from a live group (no-op if it isn't a member).
    pub fn remove_member(&mut self, group: &str, member: &str) {
        let index = self.expect(ObjectType::Group, group, ObjectState::Live, "remove_member");
        let Some(key) = self.key(member) else {
            return;
        };
        if self.groups.objects[index].member_pos(key).is_err() {
            return;
        }
        let seq = self.next_seq();
        self.remove_link(index, key, seq);
    }

    // ----- read access for tests -----

    /// Ids of live users, in creation order.
    pub fn user_ids(&self) -> Vec<String> {
        self.ids_in(ObjectType::User, ObjectState::Live)
    }

    /// Ids of live groups, in creation order.
    pub fn group_ids(&self) -> Vec<String> {
        self.ids_in(ObjectType::Group, ObjectState::Live)
    }

    /// Ids of soft-deleted users.
    pub fn deleted_user_ids(&self) -> Vec<String> {
        self.ids_in(ObjectType::User, ObjectState::SoftDeleted)
    }

    /// Ids of soft-deleted groups.
    pub fn deleted_group_ids(&self) -> Vec<String> {
        self.ids_in(ObjectType::Group, ObjectState::SoftDeleted)
    }

    /// State of the user or group `id`, `None` if it never existed.
    pub fn state_of(&self, id: &str) -> Option<ObjectState> {
        let object = self
            .object(ObjectType::User, id)
            .or_else(|| self.object(ObjectType::Group, id))?;
        Some(object.state)
    }

    /// Current properties of a user (with `id`; cleared ones as `null`), unless purged.
    pub fn user(&self, id: &str) -> Option<Value> {
        self.snapshot(ObjectType::User, id)
    }

    /// Current properties of a group (with `id`; cleared ones as `null`), unless purged.
    pub fn group(&self, id: &str) -> Option<Value> {
        self.snapshot(ObjectType::Group, id)
    }

    /// Direct members of a group (live or soft-deleted), in key order.
    pub fn members_of(&self, group: &str) -> Vec<(String, MemberKind)> {
        let Some(object) = self.object(ObjectType::Group, group) else {
            return Vec::new();
        };
        object
            .members
            .iter()
            .map(|m| (self.id(m.key).to_string(), m.kind))
            .collect()
    }

    /// Live groups that have `member` as a direct member.
    pub fn groups_of(&self, member: &str) -> Vec<String> {
        let Some(key) = self.key(member) else {
            return Vec::new();
        };
        let live = self
            .groups
            .objects
            .iter()
            .filter(|g| g.state == ObjectState::Live);
        live.filter(|g| g.member_pos(key).is_ok())
            .map(|g| self.id(g.key).to_string())
            .collect()
    }

    /// The manager of a user, if set.
    pub fn manager_of(&self, user: &str) -> Option<String> {
        let manager = self.object(ObjectType::User, user)?.manager?;
        Some(self.id(manager).to_string())
    }

    /// Membership links of live groups.
    pub fn link_count(&self) -> usize {
        let live = self
            .groups
            .objects
            .iter()
            .filter(|g| g.state == ObjectState::Live);
        live.map(|g| g.members.len()).sum()
    }

    // ----- internals -----

    fn create(&mut self, ty: ObjectType, id: &str, props: Value) {
        let key = self.intern(id);
        if self.collection(ty).index_of(key).is_some() {
            panic!(
                "sim: '{id}' already exists in {} (ids are never reused)",
                ty.segment()
            );
        }
        let seq = self.next_seq();
        let props = props_from_json(ty, props, seq);
        self.collection_mut(ty).push(key, props, seq);
    }

    fn update(&mut self, ty: ObjectType, id: &str, changes: Value) {
        let index = self.expect(ty, id, ObjectState::Live, "update");
        let seq = self.seq + 1;
        let props = &mut self.collection_mut(ty).objects[index].props;
        if apply_changes(ty, props, changes, seq) {
            self.seq = seq;
            self.collection_mut(ty).touch(index, seq);
        }
    }

    fn restore(&mut self, ty: ObjectType, index: usize) {
        let seq = self.next_seq();
        let collection = self.collection_mut(ty);
        let object = &mut collection.objects[index];
        object.state = ObjectState::Live;
        object.restored = seq;
        collection.touch(index, seq);
    }

    /// Marks an object purged and frees its properties; returns its key.
    fn purge_object(&mut self, ty: ObjectType, index: usize, seq: u64) -> u32 {
        let collection = self.collection_mut(ty);
        let object = &mut collection.objects[index];
        assert!(
            object.state != ObjectState::Purged,
            "sim: purge: already purged"
        );
        object.state = ObjectState::Purged;
        object.props = Vec::new();
        let key = object.key;
        collection.touch(index, seq);
        key
    }

    fn is_unified(&self, index: usize) -> bool {
        let Some(types) = ObjectType::Group.prop_index("groupTypes") else {
            return false;
        };
        let object = &self.groups.objects[index];
        let prop = object.props.iter().find(|p| p.name == types);
        let values = prop.and_then(|p| p.value.as_array());
        values.is_some_and(|v| {
            v.iter().any(|t| {
                t.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Unified"))
            })
        })
    }

    /// Removes `key` from every group that has it (a scan: purges are rare).
    fn remove_from_all_groups(&mut self, key: u32, seq: u64) {
        for index in 0..self.groups.objects.len() {
            let group = &self.groups.objects[index];
            if group.state != ObjectState::Purged && group.member_pos(key).is_ok() {
                self.remove_link(index, key, seq);
            }
        }
    }

    fn remove_link(&mut self, group_index: usize, key: u32, seq: u64) {
        let group = &mut self.groups.objects[group_index];
        let Ok(pos) = group.member_pos(key) else {
            return;
        };
        let member = group.members.remove(pos);
        group.log_member(member, false, seq);
        self.groups.touch(group_index, seq);
    }

    fn clear_manager_references(&mut self, key: u32, seq: u64) {
        for index in 0..self.users.objects.len() {
            let user = &mut self.users.objects[index];
            if user.manager == Some(key) && user.state != ObjectState::Purged {
                user.manager = None;
                user.manager_removed = Some(key);
                user.manager_changed = seq;
                self.users.touch(index, seq);
            }
        }
    }

    fn ids_in(&self, ty: ObjectType, state: ObjectState) -> Vec<String> {
        let objects = self.collection(ty).objects.iter();
        objects
            .filter(|o| o.state == state)
            .map(|o| self.id(o.key).to_string())
            .collect()
    }

    fn snapshot(&self, ty: ObjectType, id: &str) -> Option<Value> {
        let object = self
            .object(ty, id)
            .filter(|o| o.state != ObjectState::Purged)?;
        let mut map = Map::new();
        map.insert("id".into(), Value::String(id.to_string()));
        for prop in &object.props {
            map.insert(ty.prop_name(prop.name).into(), prop.value.clone());
        }
        Some(Value::Object(map))
    }
}

/// Converts a JSON object of initial properties into stored properties.
pub(super) fn props_from_json(ty: ObjectType, props: Value, seq: u64) -> Vec<Prop> {
    let mut out = Vec::new();
    for (name, value) in into_object(props) {
        if name == "id" {
            continue;
        }
        out.push(Prop {
            name: known_prop(ty, &name),
            value,
            changed: seq,
        });
    }
    out.sort_by_key(|p| p.name);
    out
}

/// Applies changes (null clears); returns whether anything actually changed.
fn apply_changes(ty: ObjectType, props: &mut Vec<Prop>, changes: Value, seq: u64) -> bool {
    let mut changed = false;
    for (name, value) in into_object(changes) {
        let index = known_prop(ty, &name);
        match props.binary_search_by_key(&index, |p| p.name) {
            Ok(pos) if props[pos].value != value => {
                props[pos] = Prop {
                    name: index,
                    value,
                    changed: seq,
                };
                changed = true;
            }
            Ok(_) => {}
            // Clearing a never-set property changes nothing.
            Err(_) if value.is_null() => {}
            Err(pos) => {
                props.insert(
                    pos,
                    Prop {
                        name: index,
                        value,
                        changed: seq,
                    },
                );
                changed = true;
            }
        }
    }
    changed
}

fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => panic!("sim: properties must be a JSON object, got {other}"),
    }
}

fn known_prop(ty: ObjectType, name: &str) -> u8 {
    match ty.prop_index(name) {
        Some(index) => index,
        None => panic!("sim: unknown {} property '{name}'", ty.graph_type()),
    }
}
