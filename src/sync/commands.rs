//! The commands that run beside passes: a team remap from the database alone, and the
//! deletion guard's approval.

use super::{PassReport, SyncError, finish};
use crate::config::Config;
use crate::guard::Guard;
use crate::store::{self, Counts, Store};
use crate::team;

/// Recomputes the team for a changed mapping from the database alone, as a `team` run in
/// `sync_runs`, through the deletion guard (a typo in mapping.groups must never empty the
/// team).
pub fn remap_team(config: &Config, store: &mut Store) -> Result<team::TeamUpdate, SyncError> {
    let mut guard = Guard::load(
        store,
        config.sync.max_deletions,
        &config.mapping.team,
        false,
    )?;
    let run_id = store.begin_run("team", &store::now())?;
    let update = team::update(store, &config.mapping, run_id, false, &mut guard)?;
    guard.save(store, run_id, false)?;
    let report = PassReport {
        run_id,
        kind: "team",
        counts: Counts {
            team_added: update.added,
            team_removed: update.removed,
            ..Counts::default()
        },
    };
    match guard.message() {
        Some(message) => {
            log::error!("team: {message}");
            finish(store, &report, "failed", Some(message.clone()))?;
            Err(SyncError::Held {
                message,
                report: Box::new(report),
            })
        }
        None => {
            finish(store, &report, "succeeded", None)?;
            Ok(update)
        }
    }
}

/// `approve-deletions`: records a one-shot approval and wakes a running service (SIGUSR1
/// starts a pass). Returns what the operator is told.
pub fn approve_deletions(config: &Config) -> Result<String, SyncError> {
    let database = &config.sync.database;
    let mut store = Store::open(database)?;
    let Some(held) = crate::guard::approve(&mut store)? else {
        return Ok(
            "approve-deletions: the deletion guard holds nothing; nothing to approve".into(),
        );
    };
    Ok(match crate::lock::holder(database) {
        Some(pid) => match crate::guard::wake(pid) {
            Ok(()) => format!(
                "approve-deletions: approved {held}; the running service (pid {pid}) starts a pass \
                 now that applies them (see `entra-sync status` or the journal)"
            ),
            Err(e) => format!(
                "approve-deletions: approved {held}; could not signal the running service (pid \
                 {pid}: {e}); its next scheduled pass applies them, or run `systemctl kill -s \
                 SIGUSR1 entra-sync` to start it now"
            ),
        },
        None => format!(
            "approve-deletions: approved {held}; no service is running: the next `entra-sync \
             sync` applies them"
        ),
    })
}
