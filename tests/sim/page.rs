//! Delta rounds: which objects a round reports and how one page of them is cut.
//!
//! A `Cursor` is the whole server-side state of a round between two pages (what a skiptoken
//! stands for). It is small and cloned per request, so a retried link rebuilds the same page.
//! Building a page touches only the objects (and member links) that go on it, plus entries
//! skipped on the way (superseded log entries, objects the selection doesn't track).

use std::sync::Arc;

use serde::Serialize;

use super::schema::{ObjectType, Selection};
use super::tenant::{LATEST, Member, Object, ObjectState, Tenant};

/// What a round was asked for. Every link of the round refers to it, which is how "state
/// tokens encode the query options".
#[derive(Debug)]
pub(super) struct Query {
    pub ty: ObjectType,
    pub select: Selection,
    /// `$filter=id eq '…' or …` ids, in the client's order.
    pub filter: Option<Vec<String>>,
    /// The `$filter` text as sent (for the 410 `Location`).
    pub filter_text: Option<String>,
}

/// Page-shaping knobs for one request (from `Settings`, plus the request's `Prefer`).
pub(super) struct Shape {
    pub objects: usize,
    pub links: usize,
    pub duplicate_every: Option<usize>,
    pub empty_page_every: Option<usize>,
    pub short_pages: bool,
    /// `Prefer: return=minimal` on a round that started from a deltaLink.
    pub minimal: bool,
    pub initial_removed: bool,
    pub stale_member_removals: bool,
    pub transient_links_unreported: bool,
    pub hide_deleted_members: bool,
}

/// Where the member list of the group being paged resumes.
#[derive(Clone, Copy, Debug)]
enum MemberPos {
    /// The current member list, after this key.
    Current { after: Option<u32> },
    /// Initial round only: stale removals from the membership history, from this index.
    Stale { index: usize },
    /// Membership changes of the round's window, from this history index.
    Changes { index: usize },
}

/// One `members@delta` entry: the member and whether it is a removal.
type MemberEntry = (Member, bool);

/// Server-side state of a round between two pages.
#[derive(Clone, Debug)]
pub(super) struct Cursor {
    pub query: Arc<Query>,
    /// `None`: initial round (everything live). `Some(s)`: changes after sequence `s`.
    pub since: Option<u64>,
    /// Sequence number when the round started: the next round's `since`.
    pub until: u64,
    /// Position in the round's source: object index (initial), change-log index
    /// (incremental) or filter-list index (`$filter`).
    next: usize,
    end: usize,
    /// The group whose member list is split across pages, and where it resumes.
    member: Option<(usize, MemberPos)>,
    page_no: u32,
    emitted: u64,
    /// Objects to repeat on a later page (`Settings::duplicate_every`).
    repeats: Vec<u32>,
    rng: u64,
}

/// One built page: the JSON `value` array and whether the round is complete.
pub(super) struct Page {
    pub value: Vec<u8>,
    pub done: bool,
}

impl Page {
    /// A page with no objects.
    pub fn empty(done: bool) -> Page {
        Page {
            value: b"[]".to_vec(),
            done,
        }
    }
}

impl Cursor {
    /// Starts a round: initial when `since` is `None`, else the changes after `since`.
    pub fn start(tenant: &Tenant, query: Arc<Query>, since: Option<u64>) -> Cursor {
        let collection = tenant.collection(query.ty);
        let (next, end) = match (&query.filter, since) {
            (Some(ids), _) => (0, ids.len()),
            // Objects created after the round started are left to the next round.
            (None, None) => (0, collection.objects.len()),
            (None, Some(s)) => (
                collection.log.partition_point(|e| e.seq <= s),
                collection.log.len(),
            ),
        };
        Cursor {
            query,
            since,
            until: tenant.seq(),
            next,
            end,
            member: None,
            page_no: 0,
            emitted: 0,
            repeats: Vec::new(),
            rng: tenant.seq().wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Builds the next page and advances the cursor past it.
    pub fn next_page(&mut self, tenant: &Tenant, shape: &Shape) -> Page {
        self.page_no += 1;
        if shape
            .empty_page_every
            .is_some_and(|n| n > 0 && self.page_no.is_multiple_of(n as u32 + 1))
        {
            return Page::empty(false);
        }
        let budget = self.object_budget(shape);
        let mut list = JsonList::new();
        self.write_repeats(&mut list, tenant, shape, budget);
        let mut links_left = shape.links.max(1);
        let objects = &tenant.collection(self.query.ty).objects;
        while list.count < budget {
            let Some(index) = self.peek(tenant, shape) else {
                break;
            };
            let object = &objects[index];
            if !self.wants_members(object) {
                self.write_object(&mut list, tenant, object, shape, &[]);
                self.finish_object(index, shape);
                continue;
            }
            if links_left == 0 {
                break;
            }
            let pos = match self.member {
                Some((_, pos)) => pos,
                None => self.first_member_pos(object),
            };
            let (slice, rest) = self.member_slice(object, pos, links_left, shape);
            links_left -= slice.len();
            // A group with no (changed) members carries no members@delta at all; a
            // continuation whose members vanished meanwhile is simply not repeated.
            if !slice.is_empty() || self.member.is_none() {
                self.write_object(&mut list, tenant, object, shape, &slice);
            }
            match rest {
                Some(pos) => {
                    self.member = Some((index, pos));
                    break;
                }
                None => self.finish_object(index, shape),
            }
        }
        let done =
            self.member.is_none() && self.repeats.is_empty() && self.peek(tenant, shape).is_none();
        Page {
            value: list.finish(),
            done,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn object_budget(&mut self, shape: &Shape) -> usize {
        let size = shape.objects.max(1);
        if shape.short_pages && self.random().is_multiple_of(3) {
            1 + (self.random() % size as u64) as usize
        } else {
            size
        }
    }

    /// Repeats go first on a page, property-only (their member slices were sent already).
    fn write_repeats(
        &mut self,
        list: &mut JsonList,
        tenant: &Tenant,
        shape: &Shape,
        budget: usize,
    ) {
        let objects = &tenant.collection(self.query.ty).objects;
        while list.count < budget && !self.repeats.is_empty() {
            let index = self.repeats.remove(0) as usize;
            self.write_object(list, tenant, &objects[index], shape, &[]);
        }
    }

    fn finish_object(&mut self, index: usize, shape: &Shape) {
        self.member = None;
        self.next += 1;
        self.emitted += 1;
        if shape
            .duplicate_every
            .is_some_and(|n| n > 0 && self.emitted.is_multiple_of(n as u64))
        {
            self.repeats.push(index as u32);
        }
    }

    /// Index of the object the round reports next, skipping what it must not report.
    fn peek(&mut self, tenant: &Tenant, shape: &Shape) -> Option<usize> {
        if let Some((index, _)) = self.member {
            return Some(index);
        }
        while self.next < self.end {
            if let Some(index) = self.candidate(tenant, shape) {
                return Some(index);
            }
            self.next += 1;
        }
        None
    }

    fn candidate(&mut self, tenant: &Tenant, shape: &Shape) -> Option<usize> {
        let collection = tenant.collection(self.query.ty);
        let index = match (&self.query.filter, self.since) {
            (Some(ids), _) => {
                let key = tenant.key(&ids[self.next])?;
                collection.index_of(key)?
            }
            (None, None) => self.next,
            (None, Some(_)) => {
                let entry = &collection.log[self.next];
                if entry.seq > self.until {
                    self.next = self.end;
                    return None;
                }
                // A later entry in the window reports this object.
                if entry.superseded <= self.until {
                    return None;
                }
                entry.index as usize
            }
        };
        self.reportable(&collection.objects[index], shape)
            .then_some(index)
    }

    /// Whether `object` belongs in this round under its selection.
    fn reportable(&self, object: &Object, shape: &Shape) -> bool {
        let Some(since) = self.since else {
            return object.state == ObjectState::Live || shape.initial_removed;
        };
        if object.last_change <= since {
            return false;
        }
        if object.state != ObjectState::Live || self.is_full(object) {
            return true;
        }
        // A change to an unselected property doesn't make the object show up.
        let select = &self.query.select;
        object
            .props
            .iter()
            .any(|p| p.changed > since && select.has(p.name))
            || (select.manager && object.manager_changed > since)
            || (self.query.ty == ObjectType::Group
                && select.members
                && self.members_changed(object, since))
    }

    fn members_changed(&self, object: &Object, since: u64) -> bool {
        let first = object.member_log.partition_point(|c| c.seq <= since);
        object
            .member_log
            .get(first)
            .is_some_and(|c| c.seq <= self.until)
    }

    /// Initial rounds, and objects created or restored inside the window, are sent whole.
    fn is_full(&self, object: &Object) -> bool {
        self.since
            .is_none_or(|s| object.created > s || object.restored > s)
    }

    fn wants_members(&self, object: &Object) -> bool {
        self.query.ty == ObjectType::Group
            && self.query.select.members
            && object.state == ObjectState::Live
    }

    fn first_member_pos(&self, object: &Object) -> MemberPos {
        match self.since {
            Some(since) if !self.is_full(object) => MemberPos::Changes {
                index: object.member_log.partition_point(|c| c.seq <= since),
            },
            _ => MemberPos::Current { after: None },
        }
    }

    /// Up to `max` member entries from `pos`, and where to resume if more remain.
    fn member_slice(
        &self,
        object: &Object,
        mut pos: MemberPos,
        max: usize,
        shape: &Shape,
    ) -> (Vec<MemberEntry>, Option<MemberPos>) {
        let mut out = Vec::with_capacity(max.min(object.members.len() + 8));
        if let MemberPos::Current { after } = pos {
            // Bulk path for the common case: a contiguous run of the sorted member list.
            let start = after.map_or(0, |k| object.members.partition_point(|m| m.key <= k));
            let run = &object.members[start..(start + max).min(object.members.len())];
            out.extend(run.iter().map(|m| (*m, false)));
            if let Some(last) = run.last() {
                pos = MemberPos::Current {
                    after: Some(last.key),
                };
            }
        }
        while out.len() < max {
            match self.advance_member(object, &mut pos, shape) {
                Some(entry) => out.push(entry),
                None => return (out, None),
            }
        }
        let mut probe = pos;
        let more = self.advance_member(object, &mut probe, shape).is_some();
        (out, more.then_some(pos))
    }

    /// The next member entry after `pos` (moving `pos` past it), or `None` at the end.
    fn advance_member(
        &self,
        object: &Object,
        pos: &mut MemberPos,
        shape: &Shape,
    ) -> Option<MemberEntry> {
        loop {
            match *pos {
                MemberPos::Current { after } => {
                    let start = after.map_or(0, |k| object.members.partition_point(|m| m.key <= k));
                    if let Some(member) = object.members.get(start) {
                        *pos = MemberPos::Current {
                            after: Some(member.key),
                        };
                        return Some((*member, false));
                    }
                    if self.since.is_some() || !shape.stale_member_removals {
                        return None;
                    }
                    *pos = MemberPos::Stale { index: 0 };
                }
                MemberPos::Stale { index } => {
                    let change = object.member_log.get(index)?;
                    *pos = MemberPos::Stale { index: index + 1 };
                    let stale = !change.added && change.superseded == LATEST;
                    if stale && object.member_pos(change.member.key).is_err() {
                        return Some((change.member, true));
                    }
                }
                MemberPos::Changes { index } => {
                    let change = object.member_log.get(index)?;
                    if change.seq > self.until {
                        return None;
                    }
                    *pos = MemberPos::Changes { index: index + 1 };
                    let transient = shape.transient_links_unreported
                        && !change.added
                        && self.added_in_window(object, index);
                    if change.superseded > self.until && !transient {
                        return Some((change.member, !change.added));
                    }
                }
            }
        }
    }

    /// Whether the removal at `index` of the member log ends a link added inside the window.
    fn added_in_window(&self, object: &Object, index: usize) -> bool {
        let since = self.since.unwrap_or(0);
        let key = object.member_log[index].member.key;
        object.member_log[..index]
            .iter()
            .rev()
            .take_while(|c| c.seq > since)
            .any(|c| c.added && c.member.key == key)
    }

    /// Writes one object as this round represents it; `members` empty = no `members@delta`.
    fn write_object(
        &self,
        list: &mut JsonList,
        tenant: &Tenant,
        object: &Object,
        shape: &Shape,
        members: &[MemberEntry],
    ) {
        list.open();
        list.field("id", tenant.id(object.key));
        let reason = match object.state {
            ObjectState::Live => None,
            ObjectState::SoftDeleted => Some("changed"),
            ObjectState::Purged => Some("deleted"),
        };
        if let Some(reason) = reason {
            list.raw(",\"@removed\":");
            list.removed(reason);
            list.close();
            return;
        }
        let since = self.since.unwrap_or(0);
        let minimal = shape.minimal && !self.is_full(object);
        let select = &self.query.select;
        for prop in &object.props {
            if select.has(prop.name) && (!minimal || prop.changed > since) {
                list.field(self.query.ty.prop_name(prop.name), &prop.value);
            }
        }
        if select.manager {
            self.write_manager(list, tenant, object);
        }
        let hidden = |(member, _): &&MemberEntry| {
            shape.hide_deleted_members && self.since.is_none() && !tenant.member_is_live(member)
        };
        let members: Vec<&MemberEntry> = members.iter().filter(|m| !hidden(m)).collect();
        if !members.is_empty() {
            list.raw(",\"members@delta\":[");
            for (i, (member, removed)) in members.into_iter().enumerate() {
                if i > 0 {
                    list.raw(",");
                }
                list.link(member.kind.odata_type(), tenant.id(member.key), *removed);
            }
            list.raw("]");
        }
        list.close();
    }

    fn write_manager(&self, list: &mut JsonList, tenant: &Tenant, object: &Object) {
        let mut entries: Vec<(u32, bool)> = Vec::new();
        if self.is_full(object) {
            entries.extend(object.manager.map(|m| (m, false)));
        } else if self.since.is_some_and(|s| object.manager_changed > s) {
            entries.extend(object.manager.map(|m| (m, false)));
            entries.extend(object.manager_removed.map(|m| (m, true)));
        }
        if entries.is_empty() {
            return;
        }
        list.raw(",\"manager@delta\":[");
        for (i, (key, removed)) in entries.into_iter().enumerate() {
            if i > 0 {
                list.raw(",");
            }
            list.link("#microsoft.graph.user", tenant.id(key), removed);
        }
        list.raw("]");
    }
}

/// Appends objects to a JSON array directly (no intermediate `serde_json::Value`s).
struct JsonList {
    buf: Vec<u8>,
    count: usize,
    fields: usize,
}

impl JsonList {
    fn new() -> JsonList {
        JsonList {
            buf: b"[".to_vec(),
            count: 0,
            fields: 0,
        }
    }

    fn open(&mut self) {
        if self.count > 0 {
            self.buf.push(b',');
        }
        self.buf.push(b'{');
        self.count += 1;
        self.fields = 0;
    }

    fn close(&mut self) {
        self.buf.push(b'}');
    }

    fn raw(&mut self, text: &str) {
        self.buf.extend_from_slice(text.as_bytes());
    }

    fn json(&mut self, value: &(impl Serialize + ?Sized)) {
        // Serialising strings, numbers and `Value`s into a Vec cannot fail.
        serde_json::to_writer(&mut self.buf, value).expect("JSON into memory");
    }

    fn field(&mut self, name: &str, value: &(impl Serialize + ?Sized)) {
        if self.fields > 0 {
            self.buf.push(b',');
        }
        self.fields += 1;
        self.json(name);
        self.buf.push(b':');
        self.json(value);
    }

    fn removed(&mut self, reason: &str) {
        self.raw("{\"reason\":");
        self.json(reason);
        self.raw("}");
    }

    /// A relationship entry: `{"@odata.type":…,"id":…}` plus `@removed` for removals.
    fn link(&mut self, odata_type: &str, id: &str, removed: bool) {
        self.raw("{\"@odata.type\":");
        self.json(odata_type);
        self.raw(",\"id\":");
        self.json(id);
        if removed {
            self.raw(",\"@removed\":");
            self.removed("deleted");
        }
        self.raw("}");
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push(b']');
        self.buf
    }
}
