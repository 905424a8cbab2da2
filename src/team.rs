//! The local team: the users that the mapped Entra groups bring in.
//!
//! Recomputed from the database alone (no Graph) after a pass that changed users or
//! memberships, and whenever the mapping changes. Every member added or removed is audited.
//!
//! Resolving the mapping is a security rule, since the team decides who may sign in: an
//! entry that is an object id matches ids only; an entry that is a name resolves to exactly
//! one live group, and is then pinned to that group's id (`mapping_pins`) for as long as the
//! entry stays in the mapping. A later look-alike, a rename or a deletion of the pinned group
//! never moves the team to another group; the admin re-pins by writing the wanted group's
//! object id in place of the name.

use serde::Serialize;
use serde_json::json;

use crate::config::{self, Mapping};
use crate::guard::{Guard, Target};
use crate::store::{self, GroupRef, MappingView, Pin, Store, StoreError};

/// The `meta` key holding the mapping the team was last computed for.
const MAPPING_KEY: &str = "team_mapping";
/// The `meta` key set ("1") in the same transaction as any change the team depends on, and
/// cleared when the team is recomputed: a pass stopped or killed after such a change still
/// leaves the team to be recomputed by the next one.
pub const DIRTY_KEY: &str = "team_dirty";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamUpdate {
    pub added: u64,
    pub removed: u64,
    pub size: u64,
    /// Removals the deletion guard held (the members stay).
    pub held: u64,
}

/// Recomputes the team if `changed` (users or memberships moved), if an earlier pass left it
/// dirty, or if the mapping is not the one it was last computed for. Runs in one
/// transaction, audited under `run`. Mapped entries that resolve to no live group are logged
/// as warnings and bring no members; the other groups still apply.
pub fn update(
    store: &mut Store,
    mapping: &Mapping,
    run: i64,
    changed: bool,
    guard: &mut Guard,
) -> Result<TeamUpdate, StoreError> {
    let fingerprint = fingerprint(mapping);
    let dirty = store.meta(DIRTY_KEY)?.as_deref() == Some("1");
    if !changed && !dirty && store.meta(MAPPING_KEY)?.as_deref() == Some(fingerprint.as_str()) {
        return Ok(TeamUpdate::default());
    }
    let now = store::now();
    let tx = store.transaction()?;
    let (ids, names) = lookups(&mapping.groups);
    let resolved = resolve(&mapping.groups, &tx.mapping_view(&ids, &names)?, &now);
    for entry in &resolved {
        if entry.new_pin
            && let Some(pin) = &entry.pin
        {
            log::info!(
                "team: mapping.groups: \"{}\" pinned to group \"{}\" ({})",
                entry.entry,
                pin.group_name,
                pin.group_id
            );
        }
        for line in entry.problem().into_iter().chain(entry.notes()) {
            log::warn!("team: mapping.groups: {line}");
        }
    }
    let pins: Vec<Pin> = resolved.iter().filter_map(|r| r.pin.clone()).collect();
    tx.replace_pins(&pins)?;
    let group_ids: Vec<String> = resolved
        .iter()
        .filter_map(|r| r.group_id().map(str::to_owned))
        .collect();
    let size = tx.fill_team_wanted(&group_ids, mapping.nested, mapping.include_disabled)?;
    // The deletion guard judges the removals before any goes: a typo in mapping.groups
    // must never empty the team.
    let unwanted = tx.count_unwanted_team_members(&mapping.team)?;
    let held = if guard.allow(Target::Team, unwanted) {
        0
    } else {
        unwanted
    };
    let update = TeamUpdate {
        removed: match held {
            0 => tx.remove_unwanted_team_members(&mapping.team, run, &now)?,
            _ => 0,
        },
        added: tx.add_wanted_team_members(&mapping.team, run, &now)?,
        size,
        held,
    };
    if held == 0 {
        tx.set_meta(MAPPING_KEY, &fingerprint)?;
        tx.set_meta(DIRTY_KEY, "0")?;
    } else {
        // Recomputed (and judged) again by the next pass.
        log::warn!(
            "team: \"{}\": {held} removals held by the deletion guard",
            mapping.team
        );
        tx.set_meta(DIRTY_KEY, "1")?;
    }
    tx.commit()?;
    if update.added + update.removed > 0 {
        log::info!(
            "team: \"{}\" +{} -{}, {} members",
            mapping.team,
            update.added,
            update.removed,
            update.size
        );
    }
    Ok(update)
}

/// How the mapping resolves against the database now, without pinning anything (for
/// `status` and `explain`, which only read).
pub fn describe(store: &Store, mapping: &Mapping) -> Result<Vec<Resolved>, StoreError> {
    let (ids, names) = lookups(&mapping.groups);
    let mut view = store.mapping_view(&ids, &names)?;
    view.complete = false;
    Ok(resolve(&mapping.groups, &view, ""))
}

/// The ids (lower-cased) and names (lower-cased) a mapping looks up.
pub fn lookups(entries: &[String]) -> (Vec<String>, Vec<String>) {
    entries
        .iter()
        .map(|e| e.to_lowercase())
        .partition(|e| config::is_guid(e))
}

/// What one `mapping.groups` entry stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The entry as written in the config.
    pub entry: String,
    pub outcome: Outcome,
    /// The pin in force for a name entry (kept, or made now), None for an id entry.
    pub pin: Option<Pin>,
    /// The pin was made by this resolution.
    pub new_pin: bool,
    /// Other live groups that carry a pinned entry's name now (look-alikes, ignored).
    pub others: Vec<GroupRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// A live group: its members count.
    Group { group: GroupRef },
    /// The id entry's group, or the pinned group, is deleted: no members, and no other
    /// group takes its place.
    Deleted { group: GroupRef },
    /// No group has this id, or no live group this name.
    NoMatch,
    /// An unpinned name that several live groups carry: none is used.
    Ambiguous { groups: Vec<GroupRef> },
}

impl Resolved {
    /// The live group whose members the entry brings in.
    pub fn group_id(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Group { group } => Some(&group.id),
            _ => None,
        }
    }

    fn is_id(&self) -> bool {
        config::is_guid(&self.entry)
    }

    /// Why the entry brings no members, with what to do; None when it does.
    pub fn problem(&self) -> Option<String> {
        let entry = &self.entry;
        let repin = format!(
            "to follow another group, put its object id in mapping.groups in place of \"{entry}\""
        );
        match &self.outcome {
            Outcome::Group { .. } => None,
            Outcome::NoMatch if self.is_id() => Some(format!(
                "\"{entry}\" is the object id of no group in the tenant; check \
                 the id in the Entra admin center (Groups > All groups > Object ID)"
            )),
            Outcome::NoMatch => Some(format!(
                "\"{entry}\" matches no group in the tenant; check the display \
                 name or object id in the Entra admin center (Groups > All groups)"
            )),
            Outcome::Deleted { group } if self.pin.is_some() => Some(format!(
                "\"{entry}\" is pinned to group \"{}\" ({}), which is deleted: \
                 its members are not in the team and no other group takes its place{}; if it \
                 is restored in Entra it applies again; {repin}",
                group.name,
                group.id,
                match self.others.is_empty() {
                    true => String::new(),
                    false => format!(" (ignored: {} now carries the name)", listed(&self.others)),
                }
            )),
            Outcome::Deleted { group } => Some(format!(
                "\"{entry}\" is group \"{}\", which is deleted: its members \
                 are not in the team; restore it in Entra (Groups > Deleted groups) or map \
                 another group",
                group.name
            )),
            Outcome::Ambiguous { groups } => Some(format!(
                "\"{entry}\" matches {} groups: {}; list the intended one by its \
                 object id instead",
                groups.len(),
                listed(groups)
            )),
        }
    }

    /// What the admin should know about an entry that works: its pinned group was renamed,
    /// or other groups took its name.
    pub fn notes(&self) -> Vec<String> {
        let (Some(pin), Outcome::Group { group }) = (&self.pin, &self.outcome) else {
            return Vec::new();
        };
        let entry = &self.entry;
        let mut notes = Vec::new();
        if group.name.to_lowercase() != pin.entry {
            notes.push(format!(
                "\"{entry}\" is pinned to group {}, since renamed to \"{}\"; \
                 the team still follows that group; to follow another group, put its object \
                 id in mapping.groups in place of \"{entry}\"",
                group.id, group.name
            ));
        }
        if !self.others.is_empty() {
            notes.push(format!(
                "\"{entry}\" is also the name of {}; ignored: the team stays \
                 pinned to \"{}\" ({}); to follow another group, put its object id in \
                 mapping.groups in place of \"{entry}\"",
                listed(&self.others),
                group.name,
                group.id
            ));
        }
        notes
    }
}

fn listed(groups: &[GroupRef]) -> String {
    groups
        .iter()
        .map(|g| format!("\"{}\" ({})", g.name, g.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves every entry against `view` (pure). An unpinned name that one live group carries
/// is pinned to it (with `now`) when the view is complete.
pub fn resolve(entries: &[String], view: &MappingView, now: &str) -> Vec<Resolved> {
    entries
        .iter()
        .map(|entry| resolve_entry(entry, view, now))
        .collect()
}

fn resolve_entry(entry: &str, view: &MappingView, now: &str) -> Resolved {
    let key = entry.to_lowercase();
    let by_id = |id: &str| view.groups.iter().find(|g| g.id.eq_ignore_ascii_case(id));
    let state = |group: &GroupRef| match group.deleted {
        false => Outcome::Group {
            group: group.clone(),
        },
        true => Outcome::Deleted {
            group: group.clone(),
        },
    };
    let mut resolved = Resolved {
        entry: entry.to_owned(),
        outcome: Outcome::NoMatch,
        pin: None,
        new_pin: false,
        others: Vec::new(),
    };
    if config::is_guid(entry) {
        if let Some(group) = by_id(&key) {
            resolved.outcome = state(group);
        }
        return resolved;
    }
    let named: Vec<&GroupRef> = view
        .groups
        .iter()
        .filter(|g| !g.deleted && g.name.to_lowercase() == key)
        .collect();
    if let Some(pin) = view.pins.iter().find(|p| p.entry == key) {
        // A pinned group whose row is gone (never expected) counts as deleted.
        let group = by_id(&pin.group_id).cloned().unwrap_or(GroupRef {
            id: pin.group_id.clone(),
            name: pin.group_name.clone(),
            deleted: true,
        });
        resolved.others = named
            .into_iter()
            .filter(|g| g.id != group.id)
            .cloned()
            .collect();
        resolved.outcome = state(&group);
        resolved.pin = Some(pin.clone());
        return resolved;
    }
    match named.as_slice() {
        [] => {}
        [group] => {
            resolved.outcome = state(group);
            if view.complete {
                resolved.pin = Some(Pin {
                    entry: key,
                    group_id: group.id.clone(),
                    group_name: group.name.clone(),
                    pinned_at: now.to_owned(),
                });
                resolved.new_pin = true;
            }
        }
        several => {
            resolved.outcome = Outcome::Ambiguous {
                groups: several.iter().map(|g| (*g).clone()).collect(),
            }
        }
    }
    resolved
}

fn fingerprint(mapping: &Mapping) -> String {
    json!({
        "team": mapping.team,
        "groups": mapping.groups,
        "nested": mapping.nested,
        "include_disabled": mapping.include_disabled,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G1: &str = "99999999-0000-4000-8000-000000000001";
    const G2: &str = "99999999-0000-4000-8000-000000000002";

    fn group(id: &str, name: &str, deleted: bool) -> GroupRef {
        GroupRef {
            id: id.into(),
            name: name.into(),
            deleted,
        }
    }

    fn pin(entry: &str, id: &str) -> Pin {
        Pin {
            entry: entry.into(),
            group_id: id.into(),
            group_name: "Engineering".into(),
            pinned_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn one(entry: &str, groups: Vec<GroupRef>, pins: Vec<Pin>, complete: bool) -> Resolved {
        let view = MappingView {
            groups,
            pins,
            complete,
        };
        resolve(&[entry.to_owned()], &view, "now").remove(0)
    }

    #[test]
    fn an_id_matches_ids_only() {
        // A look-alike named after the id is not the group.
        let lookalike = group(G2, G1, false);
        let r = one(G1, vec![lookalike.clone()], vec![], true);
        assert_eq!(r.outcome, Outcome::NoMatch);
        assert!(r.problem().unwrap().contains("object id of no group"));
        let real = group(G1, "Engineering", false);
        let r = one(
            &G1.to_uppercase(),
            vec![real.clone(), lookalike.clone()],
            vec![],
            true,
        );
        assert_eq!(r.group_id(), Some(G1));
        assert_eq!((r.pin, r.new_pin), (None, false));
        // Deleted: no members, and the look-alike does not step in.
        let r = one(
            G1,
            vec![group(G1, "Engineering", true), lookalike],
            vec![],
            true,
        );
        assert!(matches!(r.outcome, Outcome::Deleted { .. }), "{r:?}");
        assert_eq!(r.group_id(), None);
    }

    #[test]
    fn a_name_is_pinned_once_and_only_on_a_complete_view() {
        let real = group(G1, "Engineering", false);
        let r = one("ENGINEERING", vec![real.clone()], vec![], true);
        assert_eq!(r.group_id(), Some(G1));
        assert!(r.new_pin);
        assert_eq!(
            r.pin.unwrap(),
            Pin {
                entry: "engineering".into(),
                group_id: G1.into(),
                group_name: "Engineering".into(),
                pinned_at: "now".into(),
            }
        );
        let r = one("Engineering", vec![real.clone()], vec![], false);
        assert_eq!((r.group_id(), r.pin.is_none()), (Some(G1), true));
        // An existing pin is kept, not made again.
        let r = one(
            "Engineering",
            vec![real],
            vec![pin("engineering", G1)],
            true,
        );
        assert_eq!(
            (r.new_pin, r.pin.unwrap().pinned_at.as_str()),
            (false, "2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn an_unpinned_name_needs_exactly_one_live_group() {
        let r = one(
            "Engineering",
            vec![group(G1, "Engineering", true)],
            vec![],
            true,
        );
        assert_eq!(
            (r.outcome.clone(), r.pin.is_none()),
            (Outcome::NoMatch, true)
        );
        assert!(r.problem().unwrap().contains("matches no group"));
        let both = vec![
            group(G1, "Engineering", false),
            group(G2, "engineering", false),
        ];
        let r = one("Engineering", both, vec![], true);
        assert!(matches!(&r.outcome, Outcome::Ambiguous { groups } if groups.len() == 2));
        assert!(r.pin.is_none());
        let problem = r.problem().unwrap();
        assert!(
            problem.contains("matches 2 groups") && problem.contains(G2),
            "{problem}"
        );
    }

    #[test]
    fn a_pinned_name_follows_its_group_whatever_else_carries_the_name() {
        let pins = vec![pin("engineering", G1)];
        let lookalike = group(G2, "Engineering", false);
        // A second group takes the name.
        let r = one(
            "Engineering",
            vec![group(G1, "Engineering", false), lookalike.clone()],
            pins.clone(),
            true,
        );
        assert_eq!(r.group_id(), Some(G1));
        assert_eq!(r.others, vec![lookalike.clone()]);
        let notes = r.notes();
        assert!(
            notes.len() == 1 && notes[0].contains(G2) && notes[0].contains("object id"),
            "{notes:?}"
        );
        // The pinned group is renamed (and another takes its old name).
        let r = one(
            "Engineering",
            vec![group(G1, "Eng (old)", false), lookalike.clone()],
            pins.clone(),
            true,
        );
        assert_eq!(r.group_id(), Some(G1));
        assert!(
            r.notes()[0].contains("renamed to \"Eng (old)\""),
            "{:?}",
            r.notes()
        );
        // The pinned group is deleted: nothing takes its place.
        let r = one(
            "Engineering",
            vec![group(G1, "Engineering", true), lookalike.clone()],
            pins.clone(),
            true,
        );
        assert_eq!(r.group_id(), None);
        assert!(
            r.problem()
                .unwrap()
                .contains("pinned to group \"Engineering\"")
        );
        assert!(r.problem().unwrap().contains("ignored"));
        // Its row gone altogether: the same.
        let r = one("Engineering", vec![lookalike], pins, true);
        assert!(
            matches!(&r.outcome, Outcome::Deleted { group } if group.id == G1),
            "{r:?}"
        );
    }

    #[test]
    fn lookups_split_ids_from_names() {
        let (ids, names) = lookups(&[G1.to_uppercase(), "Sales".into()]);
        assert_eq!(
            (ids, names),
            (vec![G1.to_owned()], vec!["sales".to_owned()])
        );
    }
}
