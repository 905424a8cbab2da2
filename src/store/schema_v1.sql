-- Schema version 1. Public interface: see SCHEMA.md. Timestamps are RFC 3339 UTC text.
-- CHECKs spell value lists as OR chains: `x IN (...)` would build a temporary b-tree on every
-- insert, which was a sixth of a first import's CPU time.

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,      -- Entra object id
    user_principal_name TEXT,
    display_name        TEXT,
    mail                TEXT,
    account_enabled     INTEGER,               -- 1 enabled, 0 disabled, NULL unknown
    user_type           TEXT,                  -- Member | Guest
    attributes          TEXT NOT NULL,         -- JSON object of every selected property
    created_at          TEXT NOT NULL,         -- first seen by entra-sync
    updated_at          TEXT NOT NULL,
    deleted_at          TEXT,                  -- tombstone: when the deletion was seen
    deletion            TEXT CHECK (deletion = 'soft' OR deletion = 'permanent'),
    seen_generation     INTEGER NOT NULL DEFAULT 0  -- internal: last full round that saw it
) WITHOUT ROWID;

CREATE TABLE groups (
    id                  TEXT PRIMARY KEY,
    display_name        TEXT,
    description         TEXT,
    mail                TEXT,
    security_enabled    INTEGER,
    group_types         TEXT,                  -- JSON array, e.g. ["Unified"]
    attributes          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    deleted_at          TEXT,
    deletion            TEXT CHECK (deletion = 'soft' OR deletion = 'permanent'),
    seen_generation     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Direct memberships. Rows of soft-deleted groups and of soft-deleted users are kept (hidden by
-- the tombstone) so a restore brings them back; permanent deletion removes them.
CREATE TABLE group_members (
    group_id            TEXT NOT NULL,
    member_id           TEXT NOT NULL,
    member_type         TEXT NOT NULL,         -- user | group | device | servicePrincipal | orgContact
    added_at            TEXT NOT NULL,
    seen_generation     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;

-- No index on member_id: the team query walks from groups to members (the primary key), and
-- purges, which look members up, are batched per page into one scan. An index would cost
-- about a fifth of the file and most of a first import's time.

CREATE TABLE team_members (
    team                TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    added_at            TEXT NOT NULL,
    PRIMARY KEY (team, user_id)
) WITHOUT ROWID;

CREATE TABLE sync_state (
    resource            TEXT PRIMARY KEY,      -- users | groups
    delta_link          TEXT,                  -- starts the next incremental round
    delta_link_at       TEXT,                  -- when it was received
    query               TEXT,                  -- endpoint, tenant and $select the links belong to
    resume_link         TEXT,                  -- nextLink of a round in progress
    resume_full         INTEGER NOT NULL DEFAULT 0, -- the round in progress is a full one
    generation          INTEGER NOT NULL DEFAULT 0, -- number of the current full round
    updated_at          TEXT
);

CREATE TABLE sync_runs (
    id                  INTEGER PRIMARY KEY,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    kind                TEXT NOT NULL CHECK (kind = 'full' OR kind = 'incremental' OR kind = 'team'),
    status              TEXT NOT NULL CHECK (status = 'running' OR status = 'succeeded' OR status = 'failed' OR status = 'interrupted'),
    users_created       INTEGER NOT NULL DEFAULT 0,
    users_updated       INTEGER NOT NULL DEFAULT 0,
    users_deleted       INTEGER NOT NULL DEFAULT 0,
    users_restored      INTEGER NOT NULL DEFAULT 0,
    groups_created      INTEGER NOT NULL DEFAULT 0,
    groups_updated      INTEGER NOT NULL DEFAULT 0,
    groups_deleted      INTEGER NOT NULL DEFAULT 0,
    groups_restored     INTEGER NOT NULL DEFAULT 0,
    members_added       INTEGER NOT NULL DEFAULT 0,
    members_removed     INTEGER NOT NULL DEFAULT 0,
    team_added          INTEGER NOT NULL DEFAULT 0,
    team_removed        INTEGER NOT NULL DEFAULT 0,
    pages               INTEGER NOT NULL DEFAULT 0,
    error               TEXT
);

CREATE TABLE audit_events (
    id                  INTEGER PRIMARY KEY,
    run_id              INTEGER REFERENCES sync_runs (id),
    at                  TEXT NOT NULL,
    entity              TEXT NOT NULL CHECK (entity = 'user' OR entity = 'group' OR entity = 'membership' OR entity = 'team'),
    entity_id           TEXT NOT NULL,         -- user or group id; for membership and team the member's id
    action              TEXT NOT NULL CHECK (action = 'created' OR action = 'updated' OR action = 'deleted' OR action = 'restored' OR action = 'added' OR action = 'removed'),
    detail              TEXT                   -- JSON
);

CREATE TABLE meta (
    key                 TEXT PRIMARY KEY,
    value               TEXT NOT NULL
) WITHOUT ROWID;
