//! `entra-sync explain WHO`: why a user is, or is not, in the team. From the database alone
//! (no Graph request, no write lock, one read transaction): the user, the verdict by the
//! same rules the team is computed with, every path from a mapped group to the user, or the
//! rules that keep them out, and the user's last audit events.
//!
//! Gathering reads the store; judging (paths, verdict) is pure and table-tested below.

// The explanation is the command's output.
#![allow(clippy::print_stdout)]

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::config::{Mapping, load_config};
use crate::exit::CliError;
use crate::store::{self, AuditRow, GroupRef, Store, StoreError, UserRow};
use crate::team::{self, Outcome, Resolved};

/// At most this many paths are listed (a tenant can nest groups into many paths).
const MAX_PATHS: usize = 20;
/// How many audit events are shown.
const AUDIT_EVENTS: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub user: UserRow,
    pub team: String,
    /// The verdict by the team's rules on what the database holds now.
    pub in_team: bool,
    /// Whether `team_members` holds the user now (differs from `in_team` only until the team
    /// is next recomputed).
    pub in_team_members: bool,
    /// Each path from a mapped group down to a group that holds the user directly.
    pub paths: Vec<Vec<GroupRef>>,
    /// More paths exist than are listed.
    pub more_paths: bool,
    /// Why the user is not in the team (empty when they are).
    pub reasons: Vec<String>,
    /// What is wrong with mapping.groups entries, whoever is explained.
    pub mapping_problems: Vec<String>,
    pub audit: Vec<AuditRow>,
}

/// `explain WHO`: exit 0 with the explanation; exit 1 when no user or several match.
pub fn show(config_path: &Path, who: &str, json: bool) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let store = Store::open_read_only(&config.sync.database)?;
    if store.schema_version()? < store::SCHEMA_VERSION {
        return Err(CliError::Failed(format!(
            "explain: the database {} predates this entra-sync; run `entra-sync sync` (or \
             restart the service) once to migrate it",
            config.sync.database.display()
        )));
    }
    let found = store.snapshot(|s| gather(s, &config.mapping, who))?;
    match found {
        Found::One(explanation) if json => print_json(&explanation),
        Found::One(explanation) => print_text(&explanation),
        Found::Several(users) => {
            if json {
                print_json(&serde_json::json!({ "who": who, "matches": users }));
            } else {
                println!("{} users match \"{who}\":", users.len());
                for user in &users {
                    println!("  {}", describe_user(user));
                }
            }
            return Err(CliError::Failed(format!(
                "explain: {} users match \"{who}\"; give one's object id or user principal name",
                users.len()
            )));
        }
        Found::None => {
            if json {
                print_json(&serde_json::json!({ "who": who, "matches": [] }));
            }
            return Err(CliError::Failed(format!(
                "explain: no user in {} has the object id, user principal name, mail or display \
                 name \"{who}\"; check the spelling, or run a pass if the user is new",
                config.sync.database.display()
            )));
        }
    }
    Ok(())
}

enum Found {
    One(Box<Explanation>),
    Several(Vec<UserRow>),
    None,
}

fn gather(store: &Store, mapping: &Mapping, who: &str) -> Result<Found, StoreError> {
    let mut users = store.users_matching(who)?;
    let user = match users.len() {
        0 => return Ok(Found::None),
        1 => users.remove(0),
        _ => return Ok(Found::Several(users)),
    };
    let resolved = team::describe(store, mapping)?;
    let roots: Vec<GroupRef> = resolved
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Group { group } => Some(group.clone()),
            _ => None,
        })
        .collect();
    // The nesting below the mapped groups, read breadth first (live groups only).
    let mut nesting = Nesting::default();
    let mut queue: Vec<String> = roots.iter().map(|g| g.id.clone()).collect();
    let mut reached: HashSet<String> = queue.iter().cloned().collect();
    while let Some(group) = queue.pop() {
        let children = store.nested_groups(&group)?;
        for child in &children {
            if reached.insert(child.id.clone()) {
                queue.push(child.id.clone());
            }
        }
        nesting.children.insert(group, children);
    }
    // The groups that hold the user directly: the reached ones, and deleted mapped ones.
    let mut candidates: Vec<String> = reached.into_iter().collect();
    candidates.extend(resolved.iter().filter_map(|r| match &r.outcome {
        Outcome::Deleted { group } => Some(group.id.clone()),
        _ => None,
    }));
    let holding: HashSet<String> = store
        .groups_holding(&candidates, &user.id)?
        .into_iter()
        .collect();
    let in_team_members = store.in_team(&mapping.team, &user.id)?;
    let audit = store.audit_trail(&user.id, AUDIT_EVENTS)?;
    Ok(Found::One(Box::new(judge(
        user,
        mapping,
        &resolved,
        &roots,
        &nesting,
        &holding,
        in_team_members,
        audit,
    ))))
}

/// The live nested groups of each group reached from the mapped ones.
#[derive(Debug, Default, Clone)]
pub struct Nesting {
    pub children: HashMap<String, Vec<GroupRef>>,
}

/// Every path (up to `MAX_PATHS`) from one of `roots` down nested groups to a group in
/// `holding`, never through a group twice (cycles end), at most `max_len` groups long.
/// Returns the paths and whether more exist than were listed.
pub fn find_paths(
    roots: &[GroupRef],
    nesting: &Nesting,
    holding: &HashSet<String>,
    max_len: usize,
) -> (Vec<Vec<GroupRef>>, bool) {
    struct Walk<'a> {
        nesting: &'a Nesting,
        holding: &'a HashSet<String>,
        max_len: usize,
        path: Vec<GroupRef>,
        found: Vec<Vec<GroupRef>>,
        more: bool,
        steps: usize,
    }
    impl Walk<'_> {
        fn visit(&mut self, group: &GroupRef) {
            // Bounded work whatever the nesting: a lattice of groups has exponentially many
            // paths, and a few listed make the point.
            self.steps += 1;
            if self.more || self.steps > 100_000 {
                self.more = true;
                return;
            }
            self.path.push(group.clone());
            if self.holding.contains(&group.id) {
                if self.found.len() == MAX_PATHS {
                    self.more = true;
                } else {
                    self.found.push(self.path.clone());
                }
            }
            if self.path.len() < self.max_len {
                let children = self
                    .nesting
                    .children
                    .get(&group.id)
                    .cloned()
                    .unwrap_or_default();
                for child in &children {
                    if !self.path.iter().any(|g| g.id == child.id) {
                        self.visit(child);
                    }
                }
            }
            self.path.pop();
        }
    }
    let mut walk = Walk {
        nesting,
        holding,
        max_len,
        path: Vec::new(),
        found: Vec::new(),
        more: false,
        steps: 0,
    };
    for root in roots {
        walk.visit(root);
    }
    (walk.found, walk.more)
}

/// The verdict and its reasons, by the rules of the team (`store::Tx::fill_team_wanted`):
/// a live user, enabled unless `include_disabled` (unknown counts as enabled), who is a
/// direct member of a live mapped group or, with `nested`, of a live group nested in one.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    user: UserRow,
    mapping: &Mapping,
    resolved: &[Resolved],
    roots: &[GroupRef],
    nesting: &Nesting,
    holding: &HashSet<String>,
    in_team_members: bool,
    audit: Vec<AuditRow>,
) -> Explanation {
    let max_len = if mapping.nested { usize::MAX } else { 1 };
    let (paths, more_paths) = find_paths(roots, nesting, holding, max_len);
    let mut reasons = Vec::new();
    if let Some(at) = &user.deleted_at {
        reasons.push(match user.deletion.as_deref() {
            Some("soft") => format!(
                "the account is deleted (in Entra's deleted items, restorable) since {at}; \
                 deleted accounts are never in the team"
            ),
            _ => format!(
                "the account is deleted permanently since {at}; deleted accounts are never in \
                 the team"
            ),
        });
    }
    if user.account_enabled == Some(false) && !mapping.include_disabled {
        reasons.push(
            "the account is disabled (sign-in blocked) and mapping.include_disabled = false"
                .to_owned(),
        );
    }
    if paths.is_empty() {
        reasons.push(no_path(mapping, resolved, roots, nesting, holding));
    }
    let mapping_problems = resolved.iter().filter_map(Resolved::problem).collect();
    Explanation {
        team: mapping.team.clone(),
        in_team: reasons.is_empty(),
        in_team_members,
        paths,
        more_paths,
        reasons,
        mapping_problems,
        audit,
        user,
    }
}

/// Why no mapped group leads to the user, as precisely as the database says.
fn no_path(
    mapping: &Mapping,
    resolved: &[Resolved],
    roots: &[GroupRef],
    nesting: &Nesting,
    holding: &HashSet<String>,
) -> String {
    if mapping.groups.is_empty() {
        return "mapping.groups is empty: no group brings anyone into the team".to_owned();
    }
    if !mapping.nested {
        let (deeper, _) = find_paths(roots, nesting, holding, usize::MAX);
        if let Some(path) = deeper.first() {
            return format!(
                "a member only through nested groups ({}), and mapping.nested = false",
                path_text(path)
            );
        }
    }
    for entry in resolved {
        if let Outcome::Deleted { group } = &entry.outcome
            && holding.contains(&group.id)
        {
            let how = match entry.pin {
                Some(_) => "is pinned to",
                None => "is",
            };
            return format!(
                "a member of \"{}\" ({}), the group mapping.groups entry \"{}\" {how}, which \
                 is deleted: its members are not in the team and no other group takes its place",
                group.name, group.id, entry.entry
            );
        }
    }
    let unresolved: Vec<&str> = resolved
        .iter()
        .filter(|r| r.group_id().is_none())
        .map(|r| r.entry.as_str())
        .collect();
    let mut reason = format!(
        "no path from any mapped group ({}) to the user",
        roots
            .iter()
            .map(|g| format!("\"{}\"", g.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if roots.is_empty() {
        reason = "no mapped group resolves to a live group".to_owned();
    }
    if !unresolved.is_empty() {
        reason.push_str(&format!(
            "; mapping.groups entries that bring no one: {} (see below)",
            unresolved
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    reason
}

fn path_text(path: &[GroupRef]) -> String {
    path.iter()
        .map(|g| g.name.as_str())
        .collect::<Vec<_>>()
        .join(" > ")
}

fn describe_user(u: &UserRow) -> String {
    format!(
        "{} \"{}\" ({}){}",
        u.user_principal_name.as_deref().unwrap_or("(no UPN)"),
        u.display_name.as_deref().unwrap_or(""),
        u.id,
        if u.deleted_at.is_some() {
            ", deleted"
        } else {
            ""
        }
    )
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => log::error!("explain: cannot write JSON: {e}"),
    }
}

fn print_text(e: &Explanation) {
    let u = &e.user;
    println!(
        "user:      {}",
        u.user_principal_name.as_deref().unwrap_or("(no UPN)")
    );
    println!("name:      {}", u.display_name.as_deref().unwrap_or(""));
    println!("id:        {}", u.id);
    if let Some(mail) = &u.mail {
        println!("mail:      {mail}");
    }
    println!(
        "account:   {}, {}, {}",
        match u.account_enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "enabled state unknown",
        },
        match u.user_type.as_deref() {
            Some("Guest") => "guest",
            Some("Member") => "member",
            Some(other) => other,
            None => "user type unknown",
        },
        match (&u.deleted_at, u.deletion.as_deref()) {
            (None, _) => "not deleted".to_owned(),
            (Some(at), Some("soft")) => format!("deleted (soft, restorable) since {at}"),
            (Some(at), _) => format!("deleted permanently since {at}"),
        }
    );
    println!(
        "verdict:   {} the team \"{}\"",
        if e.in_team { "IN" } else { "NOT in" },
        e.team
    );
    if e.in_team != e.in_team_members {
        println!(
            "           (team_members says {}: the team is recomputed at the next pass)",
            if e.in_team_members { "in" } else { "not in" }
        );
    }
    if !e.paths.is_empty() {
        println!("paths:");
        for path in &e.paths {
            println!("  {}", path_text(path));
        }
        if e.more_paths {
            println!("  ... and more");
        }
    }
    if !e.reasons.is_empty() {
        println!("why not:");
        for reason in &e.reasons {
            println!("  {reason}");
        }
    }
    for problem in &e.mapping_problems {
        println!("mapping:   {problem}");
    }
    println!("last {} audit events:", e.audit.len());
    for a in &e.audit {
        println!(
            "  {} {} {}{}",
            a.at,
            a.entity,
            a.action,
            a.detail
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MappingView;

    fn group(n: u32, name: &str) -> GroupRef {
        GroupRef {
            id: format!("g{n}"),
            name: name.into(),
            deleted: false,
        }
    }

    fn user(enabled: Option<bool>, deletion: Option<&str>) -> UserRow {
        UserRow {
            id: "u1".into(),
            user_principal_name: Some("ada@contoso.example".into()),
            display_name: Some("Ada".into()),
            mail: None,
            account_enabled: enabled,
            user_type: Some("Member".into()),
            deleted_at: deletion.map(|_| "2026-01-01T00:00:00Z".into()),
            deletion: deletion.map(Into::into),
        }
    }

    fn mapping(groups: &[&str], nested: bool, include_disabled: bool) -> Mapping {
        Mapping {
            team: "Staff".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            nested,
            include_disabled,
        }
    }

    /// Engineering (g1) > Platform (g2) > Platform Core (g3), and g3 > g1 (a cycle);
    /// Sales (g4) beside them.
    fn tenant() -> (Vec<GroupRef>, Nesting) {
        let mut nesting = Nesting::default();
        nesting
            .children
            .insert("g1".into(), vec![group(2, "Platform")]);
        nesting
            .children
            .insert("g2".into(), vec![group(3, "Platform Core")]);
        nesting
            .children
            .insert("g3".into(), vec![group(1, "Engineering")]);
        (vec![group(1, "Engineering")], nesting)
    }

    fn holding(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn resolved(entries: &[&str], groups: Vec<GroupRef>) -> Vec<Resolved> {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        let view = MappingView {
            groups,
            pins: Vec::new(),
            complete: false,
        };
        team::resolve(&entries, &view, "")
    }

    fn explain(
        user: UserRow,
        mapping: &Mapping,
        resolved: &[Resolved],
        holds: &[&str],
    ) -> Explanation {
        let (_, nesting) = tenant();
        let roots: Vec<GroupRef> = resolved
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Group { group } => Some(group.clone()),
                _ => None,
            })
            .collect();
        judge(
            user,
            mapping,
            resolved,
            &roots,
            &nesting,
            &holding(holds),
            false,
            Vec::new(),
        )
    }

    #[test]
    fn paths_go_down_nested_groups_and_stop_at_cycles() {
        let (roots, nesting) = tenant();
        let (paths, more) = find_paths(&roots, &nesting, &holding(&["g3", "g1"]), usize::MAX);
        let texts: Vec<String> = paths.iter().map(|p| path_text(p)).collect();
        assert_eq!(
            texts,
            vec!["Engineering", "Engineering > Platform > Platform Core"]
        );
        assert!(!more);
        let (paths, _) = find_paths(&roots, &nesting, &holding(&["g3"]), 1);
        assert!(paths.is_empty());
    }

    #[test]
    fn many_paths_are_capped() {
        // A lattice: g0 holds g1..g30, each of which holds the user.
        let mut nesting = Nesting::default();
        let children: Vec<GroupRef> = (1..=30).map(|n| group(n, &format!("G{n}"))).collect();
        nesting.children.insert("g0".into(), children);
        let ids: Vec<String> = (1..=30).map(|n| format!("g{n}")).collect();
        let holds: HashSet<String> = ids.into_iter().collect();
        let (paths, more) = find_paths(&[group(0, "Top")], &nesting, &holds, usize::MAX);
        assert_eq!((paths.len(), more), (MAX_PATHS, true));
    }

    #[test]
    fn verdicts_and_their_reasons() {
        let engineering = || resolved(&["Engineering"], vec![group(1, "Engineering")]);
        // (case, user, mapping, groups holding the user, verdict, a reason given)
        type Case<'a> = (&'a str, UserRow, Mapping, &'a [&'a str], bool, &'a str);
        let cases: &[Case<'_>] = &[
            (
                "nested member",
                user(Some(true), None),
                mapping(&["Engineering"], true, false),
                &["g3"],
                true,
                "",
            ),
            (
                "unknown enabled counts as enabled",
                user(None, None),
                mapping(&["Engineering"], true, false),
                &["g1"],
                true,
                "",
            ),
            (
                "disabled",
                user(Some(false), None),
                mapping(&["Engineering"], true, false),
                &["g1"],
                false,
                "disabled (sign-in blocked) and mapping.include_disabled = false",
            ),
            (
                "disabled but included",
                user(Some(false), None),
                mapping(&["Engineering"], true, true),
                &["g1"],
                true,
                "",
            ),
            (
                "soft-deleted",
                user(Some(true), Some("soft")),
                mapping(&["Engineering"], true, false),
                &["g1"],
                false,
                "deleted (in Entra's deleted items, restorable)",
            ),
            (
                "purged",
                user(Some(true), Some("permanent")),
                mapping(&["Engineering"], true, false),
                &["g1"],
                false,
                "deleted permanently",
            ),
            (
                "no path",
                user(Some(true), None),
                mapping(&["Engineering"], true, false),
                &["g4"],
                false,
                "no path from any mapped group (\"Engineering\")",
            ),
            (
                "nesting off",
                user(Some(true), None),
                mapping(&["Engineering"], false, false),
                &["g3"],
                false,
                "only through nested groups (Engineering > Platform > Platform Core), and mapping.nested = false",
            ),
        ];
        for (what, user, mapping, holds, verdict, reason) in cases {
            let e = explain(user.clone(), mapping, &engineering(), holds);
            assert_eq!(e.in_team, *verdict, "{what}: {e:?}");
            assert_eq!(e.reasons.is_empty(), *verdict, "{what}: {e:?}");
            assert!(
                reason.is_empty() || e.reasons.iter().any(|r| r.contains(reason)),
                "{what}: {:?}",
                e.reasons
            );
        }
    }

    #[test]
    fn mapping_problems_keep_people_out() {
        let alice = || user(Some(true), None);
        let m = mapping(&["Sales"], true, false);
        let e = explain(alice(), &m, &resolved(&["Sales"], vec![]), &["g1"]);
        assert!(!e.in_team);
        assert!(
            e.reasons[0].contains("no mapped group resolves") && e.reasons[0].contains("\"Sales\""),
            "{:?}",
            e.reasons
        );
        assert!(
            e.mapping_problems[0].contains("matches no group"),
            "{:?}",
            e.mapping_problems
        );

        let two = vec![group(4, "Sales"), group(5, "sales")];
        let e = explain(alice(), &m, &resolved(&["Sales"], two), &["g4"]);
        assert!(
            e.mapping_problems[0].contains("matches 2 groups"),
            "{:?}",
            e.mapping_problems
        );

        let mut gone = group(1, "Engineering");
        gone.deleted = true;
        let m = mapping(&["g1"], true, false);
        let r = vec![Resolved {
            entry: "Engineering".into(),
            outcome: Outcome::Deleted { group: gone },
            pin: None,
            new_pin: false,
            others: Vec::new(),
        }];
        let e = explain(alice(), &m, &r, &["g1"]);
        assert!(
            e.reasons[0].contains("a member of \"Engineering\" (g1)")
                && e.reasons[0].contains("which is deleted"),
            "{:?}",
            e.reasons
        );

        let e = explain(alice(), &mapping(&[], true, false), &[], &[]);
        assert!(
            e.reasons[0].contains("mapping.groups is empty"),
            "{:?}",
            e.reasons
        );
    }
}
