-- Schema version 7: the round that catches up after a snapshot (issue 10). A snapshot ends by
-- storing its "sync from now" link as the delta link; the first incremental round from it is
-- the catch-up, and it records every group it reports in `snapshot_groups` (purpose
-- 'recheck') with its own pages, so those groups are re-read whole even after a crash: a
-- link added and removed inside the window then ends exact whichever way Graph reports it
-- (graph-protocol.md 3.11 (b)). The flag is cleared when that round completes.
ALTER TABLE sync_state ADD COLUMN catchup INTEGER NOT NULL DEFAULT 0;
