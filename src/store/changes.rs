//! Planned changes and the rows they are planned from: the one batched lookup a page needs
//! before it is planned ([`Tx::lookup`]), and applying a list of changes with their audit
//! rows ([`Tx::apply`]). The rules that turn a page into changes live in `sync::plan`.

// foldhash, not SipHash: these maps are keyed by ids Graph sends, hashed once or twice
// per membership of a first import; nothing here needs DoS-resistant hashing.
use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use super::*;

/// Why an object is marked deleted or a membership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An `@removed` entry (for a membership: a `members@delta` removal).
    Removed,
    /// The member or the group was deleted permanently, so its memberships go (3.7).
    Purged,
    /// A complete full round did not report it (reconciliation).
    NotReported,
}

/// One change the planner decided on. Applying it writes the rows and the audit events.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new object, with every property the payload carried.
    Create {
        kind: Kind,
        id: String,
        attributes: Props,
    },
    /// A stored object changed, came back from deleted items, or both. `attributes` is the
    /// merged result; `diff` is `{"property": {"old": ..., "new": ...}}`, empty when only
    /// the tombstone goes.
    Update {
        kind: Kind,
        id: String,
        attributes: Props,
        diff: Map<String, Value>,
        restored: bool,
    },
    /// An unchanged object reported by a full round: stamped as seen, not audited.
    Seen { kind: Kind, id: String },
    /// Marks an object deleted (a tombstone). `was_live` is false when a soft deletion
    /// becomes permanent: audited, but not counted as a new deletion.
    Delete {
        kind: Kind,
        id: String,
        name: Option<String>,
        removal: Removal,
        reason: Reason,
        was_live: bool,
    },
    /// A new direct membership.
    AddMember {
        group: Arc<str>,
        member: Arc<str>,
        member_type: MemberType,
    },
    /// An existing membership reported again in a later full round: stamped as seen.
    SeenMember {
        group: Arc<str>,
        member: Arc<str>,
        member_type: MemberType,
    },
    RemoveMember {
        group: Arc<str>,
        member: Arc<str>,
        member_type: MemberType,
        reason: Reason,
    },
}

/// How applied changes are stamped and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    /// The `sync_runs` row audit events belong to.
    pub run: i64,
    /// The full-round generation objects and memberships are stamped as seen in.
    pub generation: i64,
    pub now: &'a str,
    /// A baseline round (the first import): memberships are not audited per link, but per
    /// group when the round completes ([`Tx::audit_baseline`]).
    pub baseline: bool,
}

/// A stored user or group as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub attributes: Props,
    pub deletion: Option<Removal>,
    pub seen_generation: i64,
}

/// A stored membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLink {
    pub member_type: MemberType,
    pub seen_generation: i64,
}

/// What a page needs to read before it can be planned, borrowed from the page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wanted<'a> {
    /// Objects of the page's kind, by id.
    pub objects: Vec<&'a str>,
    /// Memberships, by group: the member ids its `members@delta` names.
    pub links: Vec<(&'a str, Vec<&'a str>)>,
    /// Ids deleted permanently on the page: every membership they are part of.
    pub purged: Vec<&'a str>,
    /// Members without a type: whether they are known users or groups.
    pub untyped: Vec<&'a str>,
}

/// The stored rows a page touches, read in one lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lookup {
    pub objects: HashMap<String, Known>,
    pub links: HashMap<(String, String), KnownLink>,
    /// (group, member, member_type) of every membership of a purged id.
    pub purged_links: Vec<(String, String, String)>,
    pub users: HashSet<String>,
    pub groups: HashSet<String>,
}

/// What a complete full round did not report, read before reconciliation is planned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unseen {
    /// (id, display name) of live objects not seen in the round's generation.
    pub objects: Vec<(String, Option<String>)>,
    /// (group, member, member_type) of memberships not seen (groups rounds only).
    pub links: Vec<(String, String, String)>,
}

impl Store {
    /// Live users, live groups and members of `team`: what a percentage limit of the
    /// deletion guard is a share of.
    pub fn live_counts(&self, team: &str) -> Result<[u64; 3]> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM users WHERE deleted_at IS NULL),
                        (SELECT count(*) FROM groups WHERE deleted_at IS NULL),
                        (SELECT count(*) FROM team_members WHERE team = ?1)",
                [team],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )
            .map_err(|e| self.err(e))
    }
}

impl Tx<'_> {
    /// Reads every stored row the page's planning needs, one statement per part (one per
    /// group for memberships), whatever the page holds.
    pub fn lookup(&self, kind: Kind, wanted: &Wanted<'_>) -> Result<Lookup> {
        let mut found = Lookup::default();
        if !wanted.objects.is_empty() {
            let sql = format!(
                "SELECT id, attributes, deletion, seen_generation FROM {}
                 WHERE id IN (SELECT value FROM json_each(?1))",
                kind.table()
            );
            let mut statement = self.tx.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let mut rows = statement
                .query([json_list(&wanted.objects)])
                .map_err(|e| self.err(e))?;
            while let Some(row) = rows.next().map_err(|e| self.err(e))? {
                let read = || -> rusqlite::Result<(String, Known)> {
                    let attributes: String = row.get(1)?;
                    let deletion: Option<String> = row.get(2)?;
                    Ok((
                        row.get(0)?,
                        Known {
                            attributes: serde_json::from_str::<Map<String, Value>>(&attributes)
                                .unwrap_or_default()
                                .into(),
                            deletion: deletion.as_deref().map(removal_of),
                            seen_generation: row.get(3)?,
                        },
                    ))
                };
                let (id, known) = read().map_err(|e| self.err(e))?;
                found.objects.insert(id, known);
            }
        }
        // Memberships are only ever written for a stored group, and group rows are never
        // removed, so a group the store does not hold has none: a first import reads no links.
        let stored_groups = wanted
            .links
            .iter()
            .filter(|(group, _)| kind != Kind::Group || found.objects.contains_key(*group));
        for (group, members) in stored_groups {
            // An id without a key is in no membership.
            let Some(group_key) = self.key(group)? else {
                continue;
            };
            let named: HashMap<i64, &str> = self
                .known_keys(members)?
                .into_iter()
                .map(|(member, key)| (key, member))
                .collect();
            if named.is_empty() {
                continue;
            }
            let keys: Vec<i64> = named.keys().copied().collect();
            let mut statement = self
                .tx
                .prepare_cached(
                    "SELECT member_key, member_type, seen_generation FROM memberships
                     WHERE group_key = ?1 AND member_key IN (SELECT value FROM json_each(?2))",
                )
                .map_err(|e| self.err(e))?;
            let list = json_list(&keys);
            let mut rows = statement
                .query(params![group_key, list])
                .map_err(|e| self.err(e))?;
            while let Some(row) = rows.next().map_err(|e| self.err(e))? {
                let key: i64 = row.get(0).map_err(|e| self.err(e))?;
                // A known type's shared name, not a string per link (a full round reads them all).
                let member_type = || -> rusqlite::Result<MemberType> {
                    Ok(crate::graph::member_type(row.get_ref(1)?.as_str()?))
                };
                let link = KnownLink {
                    member_type: member_type().map_err(|e| self.err(e))?,
                    seen_generation: row.get(2).map_err(|e| self.err(e))?,
                };
                if let Some(member) = named.get(&key) {
                    found
                        .links
                        .insert(((*group).to_owned(), (*member).to_owned()), link);
                }
            }
        }
        // Only what the store holds can have memberships: a removal of an id never seen
        // costs no scan.
        let purged: Vec<&str> = wanted
            .purged
            .iter()
            .filter(|id| found.objects.contains_key(**id))
            .copied()
            .collect();
        if !purged.is_empty() {
            // No index on member_id: one scan for all of the page's purges.
            let mut statement = self
                .tx
                .prepare_cached(
                    "WITH purged(key) AS (
                         SELECT key FROM object_keys WHERE id IN (SELECT value FROM json_each(?1))
                     )
                     SELECT g.id, m.id, l.member_type FROM memberships l
                     JOIN object_keys g ON g.key = l.group_key
                     JOIN object_keys m ON m.key = l.member_key
                     WHERE l.group_key IN purged OR l.member_key IN purged",
                )
                .map_err(|e| self.err(e))?;
            found.purged_links = statement
                .query_map([json_list(&purged)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
        }
        if !wanted.untyped.is_empty() {
            let list = json_list(&wanted.untyped);
            for (kind, into) in [
                (Kind::User, &mut found.users),
                (Kind::Group, &mut found.groups),
            ] {
                let sql = format!(
                    "SELECT id FROM {} WHERE id IN (SELECT value FROM json_each(?1))",
                    kind.table()
                );
                let mut statement = self.tx.prepare_cached(&sql).map_err(|e| self.err(e))?;
                let ids: Vec<String> = statement
                    .query_map([&list], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| self.err(e))?;
                into.extend(ids);
            }
        }
        Ok(found)
    }

    /// Live objects of `kind`, and (for groups) memberships, not seen in `generation`: what
    /// a complete full round did not report.
    pub fn unseen(&self, kind: Kind, generation: i64) -> Result<Unseen> {
        let sql = format!(
            "SELECT id, display_name FROM {} WHERE seen_generation < ?1 AND deleted_at IS NULL",
            kind.table()
        );
        let mut statement = self.tx.prepare(&sql).map_err(|e| self.err(e))?;
        let objects = statement
            .query_map([generation], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let links = if kind == Kind::Group {
            let mut statement = self
                .tx
                // The hidden memberships of soft-deleted groups and users, and of the groups
                // this round did not report (tombstoned as soft now), are kept: a full round
                // does not list deleted objects, and a restore does not report their
                // memberships again (3.8).
                .prepare(
                    "SELECT g.id, m.id, l.member_type FROM memberships l
                     JOIN object_keys g ON g.key = l.group_key
                     JOIN object_keys m ON m.key = l.member_key
                     WHERE l.seen_generation < ?1
                       AND g.id NOT IN (SELECT id FROM groups WHERE deletion = 'soft'
                            OR (deleted_at IS NULL AND seen_generation < ?1))
                       AND m.id NOT IN (SELECT id FROM users WHERE deletion = 'soft')",
                )
                .map_err(|e| self.err(e))?;
            statement
                .query_map([generation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?
        } else {
            Vec::new()
        };
        Ok(Unseen { objects, links })
    }

    /// Applies `changes` in order, with an audit event for each audited one, stamping
    /// objects and memberships with the stamp's generation.
    pub fn apply(&self, changes: &[Change], stamp: &Stamp<'_>) -> Result<()> {
        let keys = self.keys_of(changes)?;
        let at = unix_seconds(stamp.now);
        let mut links = LinkWriter::prepare(self)?;
        for (change, link) in changes.iter().zip(keys) {
            self.apply_one(change, stamp, link, &mut links, at)?;
        }
        Ok(())
    }

    /// One `membership`/`added` event per group with members, `{"group": id, "members": N,
    /// "baseline": true}`: what a baseline round imported, written when it completes.
    pub fn audit_baseline(&self, run: i64, now: &str) -> Result<u64> {
        let inserted = self
            .tx
            .execute(
                "INSERT INTO audit_events (run_id, at, entity, entity_id, action, detail)
                 SELECT ?1, ?2, 'membership', g.id, 'added',
                        json_object('group', g.id, 'members', c.members, 'baseline', json('true'))
                 FROM (SELECT group_key, count(*) AS members FROM memberships GROUP BY group_key) c
                 JOIN object_keys g ON g.key = c.group_key
                 ORDER BY g.id",
                params![run, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(inserted as u64)
    }

    /// Writes one change; `link` holds the keys of the group and member of a change to a
    /// membership.
    fn apply_one(
        &self,
        change: &Change,
        stamp: &Stamp<'_>,
        link: Option<(i64, i64)>,
        links: &mut LinkWriter<'_>,
        at: i64,
    ) -> Result<()> {
        let Stamp {
            run,
            generation,
            now,
            baseline,
        } = *stamp;
        match change {
            Change::Create {
                kind,
                id,
                attributes,
            } => {
                self.put_object(*kind, id, attributes, true, generation, now)?;
                self.audit(run, now, kind.entity(), id, "created", None)
            }
            Change::Update {
                kind,
                id,
                attributes,
                diff,
                restored,
            } => {
                self.put_object(*kind, id, attributes, false, generation, now)?;
                if *restored {
                    self.audit(run, now, kind.entity(), id, "restored", None)?;
                }
                if !diff.is_empty() {
                    let detail = Value::Object(diff.clone());
                    self.audit(run, now, kind.entity(), id, "updated", Some(&detail))?;
                }
                Ok(())
            }
            Change::Seen { kind, id } => self.mark_seen(*kind, id, generation),
            Change::Delete {
                kind,
                id,
                removal,
                reason,
                ..
            } => {
                self.tombstone(*kind, id, *removal, now)?;
                let detail = match reason {
                    Reason::NotReported => serde_json::json!({
                        "deletion": removal.as_str(),
                        "reason": "not reported by a full pass",
                    }),
                    _ => serde_json::json!({ "deletion": removal.as_str() }),
                };
                self.audit(run, now, kind.entity(), id, "deleted", Some(&detail))
            }
            Change::AddMember {
                group,
                member,
                member_type,
            } => {
                let (group_key, member_key) = self.link_keys(link)?;
                links
                    .add(group_key, member_key, member_type, generation, at)
                    .map_err(|e| self.err(e))?;
                if baseline {
                    return Ok(()); // counted per group when the round completes
                }
                let detail = link_detail(group, member_type);
                self.audit_text(run, now, "membership", member, "added", Some(&detail))
            }
            Change::SeenMember { member_type, .. } => {
                let (group_key, member_key) = self.link_keys(link)?;
                links
                    .stamp(group_key, member_key, member_type, generation)
                    .map_err(|e| self.err(e))?;
                Ok(())
            }
            Change::RemoveMember {
                group,
                member,
                member_type,
                ..
            } => {
                self.remove_member(group, member)?;
                if baseline {
                    // Only what this round added can go: the baseline counts what stays.
                    return Ok(());
                }
                let detail = link_detail(group, member_type);
                self.audit_text(run, now, "membership", member, "removed", Some(&detail))
            }
        }
    }

    /// The keys `keys_of` found for a change to a membership: it gives one to every id
    /// such a change names, so a missing one is a bug, reported instead of writing a
    /// wrong row.
    fn link_keys(&self, link: Option<(i64, i64)>) -> Result<(i64, i64)> {
        link.ok_or_else(|| StoreError::Corrupt {
            path: self.path.display().to_string(),
            detail: "a membership's group or member has no key".into(),
        })
    }
}

/// The two statements a page runs once per membership, prepared once per page: taking
/// them from the statement cache for each of a first import's million links was a tenth
/// of the cost of writing one.
struct LinkWriter<'t> {
    add: rusqlite::CachedStatement<'t>,
    stamp: rusqlite::CachedStatement<'t>,
}

impl<'t> LinkWriter<'t> {
    fn prepare(tx: &'t Tx<'_>) -> Result<Self> {
        let prepare = |sql| tx.tx.prepare_cached(sql).map_err(|e| tx.err(e));
        Ok(LinkWriter {
            add: prepare(
                "INSERT INTO memberships
                    (group_key, member_key, member_type, added_at, seen_generation)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            stamp: prepare(
                "UPDATE memberships SET seen_generation = ?3, member_type = ?4
                 WHERE group_key = ?1 AND member_key = ?2",
            )?,
        })
    }

    /// Inserts a new direct membership, by the keys of its group and member.
    fn add(
        &mut self,
        group: i64,
        member: i64,
        member_type: &str,
        generation: i64,
        at: i64,
    ) -> rusqlite::Result<usize> {
        self.add
            .execute(params![group, member, member_type, at, generation])
    }

    /// Stamps a stored membership as seen, with the type this round reported.
    fn stamp(
        &mut self,
        group: i64,
        member: i64,
        member_type: &str,
        generation: i64,
    ) -> rusqlite::Result<usize> {
        self.stamp
            .execute(params![group, member, generation, member_type])
    }
}

/// A list of ids or keys as the JSON text `json_each` reads, written straight to text (no
/// copy into a JSON value first).
pub(super) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// A membership event's detail, `{"group": "<group id>", "type": "<member type>"}`, written
/// straight to text: a first import writes one per link.
fn link_detail(group: &str, member_type: &str) -> String {
    #[derive(serde::Serialize)]
    struct Detail<'a> {
        group: &'a str,
        #[serde(rename = "type")]
        member_type: &'a str,
    }
    serde_json::to_string(&Detail { group, member_type }).unwrap_or_default()
}

/// `now` (RFC 3339, as `store::now` writes it) as Unix seconds: memberships store their time
/// as an integer. A time that does not parse (never written by entra-sync) counts as 0.
fn unix_seconds(now: &str) -> i64 {
    time::OffsetDateTime::parse(now, &time::format_description::well_known::Rfc3339)
        .map_or(0, |at| at.unix_timestamp())
}

fn removal_of(deletion: &str) -> Removal {
    match deletion {
        "soft" => Removal::Soft,
        _ => Removal::Permanent,
    }
}
