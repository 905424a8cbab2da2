//! The deletion guard: one pass may mark at most `sync.max_deletions` users deleted, groups
//! deleted, and members removed from the team, each kind counted on its own, whatever the
//! cause (`@removed` entries, reconciliation, a mapping edit). Past the limit, that kind's
//! deletions are held: the rows stay live, the team keeps its members, the round's link does
//! not move past them, and the pass fails saying so.
//!
//! Once tripped, a kind stays held in later passes (so the limit cannot leak through pass by
//! pass) until the operator approves (`approve-deletions`, one pass; `sync
//! --allow-deletions`), or a complete pass finds nothing of that kind to delete any more (the
//! cause was undone). The decisions are pure ([`Guard::allow`]); `load` and `save` keep
//! the state in the `meta` table, so it survives a restart.

use serde_json::{Value, json};

use crate::config::MaxDeletions;
use crate::store::{self, Store, StoreError};

/// `meta` key: the kinds held by the last pass that judged them, `{"users": n, ...}`.
pub const HELD_KEY: &str = "deletions_held";
/// `meta` key: a one-shot approval written by `approve-deletions`, `{"at": ..., "by": ...}`.
pub const APPROVAL_KEY: &str = "deletions_approved";
/// `meta` key: the last approval used, with the pass that used it.
pub const APPROVAL_USED_KEY: &str = "deletions_approval_used";

/// What the guard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Users,
    Groups,
    Team,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Users, Target::Groups, Target::Team];

    fn index(self) -> usize {
        self as usize
    }

    pub fn key(self) -> &'static str {
        match self {
            Target::Users => "users",
            Target::Groups => "groups",
            Target::Team => "team",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Target::Users => "users marked deleted",
            Target::Groups => "groups marked deleted",
            Target::Team => "members removed from the team",
        }
    }

    fn kept(self) -> &'static str {
        match self {
            Target::Users => "the users stay live",
            Target::Groups => "the groups stay live",
            Target::Team => "the team keeps those members",
        }
    }
}

/// How many deletions of each kind ([`Target::ALL`] order) are held now, as the last pass
/// that judged them left them (0 for a kind not held).
pub fn held_counts(store: &Store) -> Result<[u64; 3], StoreError> {
    let held: Value = store
        .meta(HELD_KEY)?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    Ok(Target::ALL.map(|t| held.get(t.key()).and_then(Value::as_u64).unwrap_or(0)))
}

/// Who lifted the limit for one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// `sync --allow-deletions`.
    Flag,
    /// `approve-deletions`: the `meta` text it wrote, removed once the pass used it.
    Approved(String),
}

impl Approval {
    /// How audit details name it.
    pub fn name(&self) -> &'static str {
        match self {
            Approval::Flag => "sync --allow-deletions",
            Approval::Approved(_) => "approve-deletions",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard {
    setting: MaxDeletions,
    limits: [Option<u64>; 3],
    approval: Option<Approval>,
    /// Held by an earlier pass: everything of that kind is held until released.
    tripped: [bool; 3],
    applied: [u64; 3],
    held: [u64; 3],
    /// Whether this pass judged the kind at all (a pass that stopped early judged less).
    judged: [bool; 3],
}

impl Guard {
    /// A guard for `setting`, with `live` users, groups and team members stored, the kinds
    /// `tripped` by earlier passes, and an approval if one is in force.
    pub fn new(
        setting: MaxDeletions,
        live: [u64; 3],
        tripped: [bool; 3],
        approval: Option<Approval>,
    ) -> Guard {
        Guard {
            setting,
            limits: live.map(|n| setting.limit(n)),
            approval,
            tripped,
            applied: [0; 3],
            held: [0; 3],
            judged: [false; 3],
        }
    }

    /// A guard that holds nothing (a team recomputed where no limit is wanted).
    pub fn off() -> Guard {
        Guard::new(MaxDeletions::Off, [0; 3], [false; 3], None)
    }

    /// Decides on `n` deletions of `target` planned together: true to apply them all,
    /// false to hold them all. Once a kind is held, everything later of that kind is too.
    pub fn allow(&mut self, target: Target, n: u64) -> bool {
        let i = target.index();
        self.judged[i] = true;
        if n == 0 {
            return true;
        }
        let over = match self.limits[i] {
            _ if self.approval.is_some() => false,
            None => false,
            Some(_) if self.tripped[i] || self.held[i] > 0 => true,
            Some(limit) => self.applied[i].saturating_add(n) > limit,
        };
        if over {
            self.held[i] += n;
        } else {
            self.applied[i] += n;
        }
        !over
    }

    pub fn approval(&self) -> Option<&Approval> {
        self.approval.as_ref()
    }

    pub fn held(&self, target: Target) -> u64 {
        self.held[target.index()]
    }

    pub fn holds_any(&self) -> bool {
        self.held.iter().any(|&n| n > 0)
    }

    /// The operator's error for what this pass held, if anything.
    pub fn message(&self) -> Option<String> {
        let parts: Vec<String> = Target::ALL
            .iter()
            .filter(|t| self.held(**t) > 0)
            .map(|&t| {
                let i = t.index();
                let limit = match (self.setting, self.limits[i]) {
                    (MaxDeletions::Percent(p), Some(n)) => format!("{p}% = {n}"),
                    (_, Some(n)) => n.to_string(),
                    (_, None) => "none".to_owned(),
                };
                let why = if self.tripped[i] {
                    "held since an earlier pass went over the limit"
                } else {
                    "over the limit"
                };
                format!(
                    "held {} {} ({why}; sync.max_deletions = {}, limit {limit} per pass); {}",
                    self.held(t),
                    t.noun(),
                    self.setting,
                    t.kept()
                )
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "deletion guard: {}. If these deletions are intended, run `entra-sync approve-deletions` \
             (a running service applies them at once) or `entra-sync sync --allow-deletions`; if \
             not, undo their cause (restore the objects in the Entra admin center, or fix \
             mapping.groups) and the next complete pass releases the hold, or raise \
             sync.max_deletions",
            parts.join("; ")
        ))
    }

    /// The kinds held from now on: held by this pass, or held before and not judged again
    /// by a complete pass. An approval clears them.
    pub fn still_tripped(&self, complete: bool) -> [bool; 3] {
        let mut out = [false; 3];
        for t in Target::ALL {
            let i = t.index();
            let judged = self.judged[i] && (complete || t == Target::Team);
            out[i] = self.held[i] > 0 || (self.tripped[i] && self.approval.is_none() && !judged);
        }
        out
    }

    /// Reads the state this guard starts from: the tripped kinds, an approval, and (for a
    /// percentage limit) how many objects of each kind are live.
    pub fn load(
        store: &Store,
        setting: MaxDeletions,
        team: &str,
        allow: bool,
    ) -> Result<Guard, StoreError> {
        let tripped = held_counts(store)?.map(|n| n > 0);
        let live = match setting {
            MaxDeletions::Percent(_) => store.live_counts(team)?,
            _ => [0; 3],
        };
        let approval = if allow {
            Some(Approval::Flag)
        } else {
            store.meta(APPROVAL_KEY)?.map(Approval::Approved)
        };
        if let Some(approval) = &approval {
            log::info!(
                "deletion guard: no limit for this pass ({})",
                approval.name()
            );
        }
        Ok(Guard::new(setting, live, tripped, approval))
    }

    /// Keeps what is held for later passes and uses up an approval, in one transaction.
    /// `complete`: both rounds of the pass reached their deltaLink.
    pub fn save(&self, store: &mut Store, run: i64, complete: bool) -> Result<(), StoreError> {
        let tripped = self.still_tripped(complete);
        let mut held = serde_json::Map::new();
        for t in Target::ALL {
            let i = t.index();
            if tripped[i] {
                held.insert(t.key().into(), json!(self.held[i].max(1)));
            } else if self.tripped[i] {
                log::info!("deletion guard: {} are no longer held", t.noun());
            }
        }
        let tx = store.transaction()?;
        if held.is_empty() {
            tx.delete_meta(HELD_KEY)?;
        } else {
            tx.set_meta(HELD_KEY, &Value::Object(held).to_string())?;
        }
        if let Some(approval) = &self.approval {
            tx.mark_approved(run, approval.name())?;
        }
        if let Some(Approval::Approved(text)) = &self.approval {
            // Only the approval this pass read: one written during the pass is for the next.
            if tx.meta(APPROVAL_KEY)?.as_deref() == Some(text.as_str()) {
                tx.delete_meta(APPROVAL_KEY)?;
            }
            let used = json!({ "run": run, "at": store::now(), "approval": text });
            tx.set_meta(APPROVAL_USED_KEY, &used.to_string())?;
            log::info!(
                "deletion guard: the approval from approve-deletions was used by pass {run}: {} \
                 users, {} groups and {} team members deleted",
                self.applied[0],
                self.applied[1],
                self.applied[2]
            );
        }
        tx.commit()
    }
}

/// Writes a one-shot approval if something is held; returns what is held, in words.
pub fn approve(store: &mut Store) -> Result<Option<String>, StoreError> {
    let Some(text) = store.meta(HELD_KEY)? else {
        return Ok(None);
    };
    let held: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let words: Vec<String> = Target::ALL
        .iter()
        .filter_map(|t| {
            let n = held.get(t.key())?.as_u64()?;
            Some(format!("{n} {}", t.noun()))
        })
        .collect();
    let approval = json!({ "at": store::now(), "by": "approve-deletions", "held": held });
    store.set_meta(APPROVAL_KEY, &approval.to_string())?;
    let words = words.join(", ");
    log::info!("deletion guard: approve-deletions approved the held deletions ({words})");
    Ok(Some(words))
}

/// Asks the service with `pid` to start a pass now (SIGUSR1).
pub fn wake(pid: u32) -> Result<(), String> {
    let pid = i32::try_from(pid).map_err(|_| format!("{pid} is no process id"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_counts_read_what_the_last_pass_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(held_counts(&store).unwrap(), [0, 0, 0]);
        store
            .set_meta(HELD_KEY, r#"{"team": 612, "users": 3}"#)
            .unwrap();
        assert_eq!(held_counts(&store).unwrap(), [3, 0, 612]);
    }

    #[test]
    fn limits_per_kind() {
        let mut g = Guard::new(MaxDeletions::Count(10), [0; 3], [false; 3], None);
        assert!(g.allow(Target::Users, 6));
        assert!(g.allow(Target::Users, 4), "up to the limit is fine");
        assert!(!g.allow(Target::Users, 1), "past it is held");
        assert!(g.allow(Target::Users, 0), "nothing to delete is never held");
        assert!(g.allow(Target::Groups, 10), "each kind on its own");
        assert!(!g.allow(Target::Team, 11));
        assert!(
            !g.allow(Target::Users, 1),
            "once held, all of that kind is held"
        );
        assert_eq!(
            (
                g.held(Target::Users),
                g.held(Target::Groups),
                g.held(Target::Team)
            ),
            (2, 0, 11)
        );
        let message = g.message().unwrap();
        assert!(message.contains("held 2 users marked deleted"), "{message}");
        assert!(
            message.contains("held 11 members removed from the team"),
            "{message}"
        );
        assert!(message.contains("approve-deletions") && message.contains("--allow-deletions"));
        assert!(!message.contains("groups marked deleted"), "{message}");
    }

    #[test]
    fn percent_off_and_approval() {
        let mut g = Guard::new(MaxDeletions::Percent(10), [100, 50, 7], [false; 3], None);
        assert!(g.allow(Target::Users, 10));
        assert!(!g.allow(Target::Users, 1));
        assert!(g.allow(Target::Groups, 5));
        assert!(!g.allow(Target::Team, 1), "10% of 7 is 0");
        assert!(g.message().unwrap().contains("limit 10% = 10 per pass"));

        let mut off = Guard::new(MaxDeletions::Off, [0; 3], [true; 3], None);
        assert!(off.allow(Target::Users, 1_000_000));
        let mut approved = Guard::new(
            MaxDeletions::Count(1),
            [0; 3],
            [true; 3],
            Some(Approval::Flag),
        );
        assert!(approved.allow(Target::Team, 1000));
        assert_eq!(approved.message(), None);
        assert_eq!(
            approved.still_tripped(false),
            [false; 3],
            "an approval releases"
        );
    }

    #[test]
    fn a_trip_lasts_until_a_complete_pass_finds_nothing() {
        let mut g = Guard::new(MaxDeletions::Count(500), [0; 3], [true, false, false], None);
        assert!(!g.allow(Target::Users, 1), "held since an earlier pass");
        assert!(g.message().unwrap().contains("held since an earlier pass"));
        assert_eq!(g.still_tripped(true), [true, false, false]);

        let mut quiet = Guard::new(MaxDeletions::Count(500), [0; 3], [true, true, true], None);
        quiet.allow(Target::Users, 0);
        quiet.allow(Target::Team, 0);
        // Groups were never judged (no groups page), an incomplete pass proves nothing.
        assert_eq!(quiet.still_tripped(false), [true, true, false]);
        assert_eq!(quiet.still_tripped(true), [false, true, false]);
    }
}
