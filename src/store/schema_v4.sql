-- Schema version 4: the progress of a snapshot full pass (graph-protocol.md 3.11), internal.
-- A snapshot takes the "sync from now" delta links first, lists the tenant with the non-delta
-- endpoints, reconciles, then catches up from those links. These rows make it resumable: a
-- killed snapshot continues with what it had not finished. They are empty between snapshots.
-- See SCHEMA.md.

-- One row per resource whose snapshot is under way.
CREATE TABLE snapshot_state (
    resource            TEXT PRIMARY KEY,      -- users | groups
    catchup_link        TEXT NOT NULL,         -- the `$deltatoken=latest` deltaLink taken first
    query               TEXT NOT NULL,         -- endpoint, tenant and $select it belongs to
    generation          INTEGER NOT NULL,      -- the full-round generation the listing stamps
    baseline            INTEGER NOT NULL,      -- 1: first import into an empty database
    started_at          TEXT NOT NULL
) WITHOUT ROWID;

-- The listing chains of a snapshot: the users partitions (or one chain when the service
-- refuses the partition filter), the groups list.
CREATE TABLE snapshot_chains (
    resource            TEXT NOT NULL,
    chain               TEXT NOT NULL,         -- a partition's name, or 'all'
    next_link           TEXT,                  -- where the chain continues; NULL: at its start
    done                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resource, chain)
) WITHOUT ROWID;

-- Groups whose direct members are to be read: every listed group during a snapshot, and the
-- groups its catch-up round reported (re-read, so a link added and removed inside the window
-- ends exact whichever way Graph reports it).
CREATE TABLE snapshot_groups (
    group_id            TEXT PRIMARY KEY,
    purpose             TEXT NOT NULL CHECK (purpose = 'snapshot' OR purpose = 'recheck'),
    next_link           TEXT,                  -- the member list continues here; NULL: at its start
    done                INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
