//! The local team: the users that the mapped Entra groups bring in.
//!
//! Recomputed from the database alone (no Graph) after a pass that changed users or
//! memberships, and whenever the mapping changes. Every member added or removed is audited.

use serde_json::json;

use crate::config::Mapping;
use crate::store::{self, Store, StoreError};

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
}

/// Recomputes the team if `changed` (users or memberships moved), if an earlier pass left it
/// dirty, or if the mapping is not the one it was last computed for. Runs in one
/// transaction, audited under `run`. Mapped groups that match no live group or several are
/// logged as warnings and skipped; the other groups still apply.
pub fn update(
    store: &mut Store,
    mapping: &Mapping,
    run: i64,
    changed: bool,
) -> Result<TeamUpdate, StoreError> {
    let fingerprint = fingerprint(mapping);
    let dirty = store.meta(DIRTY_KEY)?.as_deref() == Some("1");
    if !changed && !dirty && store.meta(MAPPING_KEY)?.as_deref() == Some(fingerprint.as_str()) {
        return Ok(TeamUpdate::default());
    }
    let now = store::now();
    let tx = store.transaction()?;
    let (group_ids, problems) = resolve(&tx, mapping)?;
    for problem in &problems {
        log::warn!("team: {problem}");
    }
    let size = tx.fill_team_wanted(&group_ids, mapping.nested, mapping.include_disabled)?;
    let update = TeamUpdate {
        removed: tx.remove_unwanted_team_members(&mapping.team, run, &now)?,
        added: tx.add_wanted_team_members(&mapping.team, run, &now)?,
        size,
    };
    tx.set_meta(MAPPING_KEY, &fingerprint)?;
    tx.set_meta(DIRTY_KEY, "0")?;
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

/// Turns the mapped entries (ids or display names) into live group ids.
fn resolve(
    tx: &store::Tx<'_>,
    mapping: &Mapping,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut ids = Vec::new();
    let mut problems = Vec::new();
    for entry in &mapping.groups {
        let matches = tx.groups_matching(entry)?;
        let live: Vec<&(String, String, bool)> =
            matches.iter().filter(|(_, _, deleted)| !deleted).collect();
        match live.as_slice() {
            [(id, _, _)] => ids.push(id.clone()),
            [] if matches.is_empty() => problems.push(format!(
                "mapping.groups: \"{entry}\" matches no group in the tenant; check the display name \
                 or object id in the Entra admin center (Groups > All groups)"
            )),
            [] => problems.push(format!(
                "mapping.groups: \"{entry}\" is a deleted group; its members are not in the team"
            )),
            several => {
                let listed: Vec<String> = several.iter().map(|(id, name, _)| format!("{name} ({id})")).collect();
                problems.push(format!(
                    "mapping.groups: \"{entry}\" matches {} groups: {}; list the intended one by its \
                     object id instead",
                    several.len(),
                    listed.join(", ")
                ));
            }
        }
    }
    Ok((ids, problems))
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
