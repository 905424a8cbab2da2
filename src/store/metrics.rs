//! What the metrics file reports from the database: passes by kind and outcome, the last
//! pass of each kind, the last success and attempt. Reads only.

use super::*;

/// The passes' record, for `metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassRecord {
    /// When the last pass that succeeded finished.
    pub last_success: Option<String>,
    /// When the last pass started.
    pub last_attempt: Option<String>,
    /// (kind, status, how many) over the whole history.
    pub totals: Vec<(String, String, i64)>,
    /// Per kind, the last finished pass: (kind, status, started_at, finished_at).
    pub last_by_kind: Vec<(String, String, String, String)>,
}

impl Store {
    pub fn pass_record(&self) -> Result<PassRecord> {
        let err = |e| self.err(e);
        let (last_success, last_attempt) = self
            .conn
            .query_row(
                "SELECT (SELECT max(finished_at) FROM sync_runs WHERE status = 'succeeded'),
                        (SELECT max(started_at) FROM sync_runs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let mut statement = self
            .conn
            .prepare(
                "SELECT kind, status, count(*) FROM sync_runs WHERE status <> 'running'
                 GROUP BY kind, status ORDER BY kind, status",
            )
            .map_err(err)?;
        let totals = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let mut statement = self
            .conn
            .prepare(
                "SELECT r.kind, r.status, r.started_at, r.finished_at FROM sync_runs r
                 JOIN (SELECT kind, max(id) AS id FROM sync_runs
                       WHERE finished_at IS NOT NULL GROUP BY kind) l ON l.id = r.id
                 ORDER BY r.kind",
            )
            .map_err(err)?;
        let last_by_kind = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        Ok(PassRecord {
            last_success,
            last_attempt,
            totals,
            last_by_kind,
        })
    }
}
