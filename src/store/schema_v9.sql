-- Schema version 9: `users` and `groups` become rowid tables (issue 10 part 2). As WITHOUT
-- ROWID tables their rows, about 1 KB each, lived in the primary key's b-tree: random GUIDs
-- put every new row at a random place of a 100 MB tree, so each commit of a first import
-- rewrote most of its leaves, and a row over SQLite's ~1 KB in-leaf limit for such trees
-- spilled into an overflow page. Now rows append in rowid order and the id's unique index
-- (about 5 MB at 100,000 users) takes the random inserts. Columns, their order and the
-- primary key are the same: queries do not change. See SCHEMA.md.

DROP VIEW group_members;
DROP INDEX users_team;

CREATE TABLE users_v9 (
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
);
INSERT INTO users_v9 SELECT * FROM users;
DROP TABLE users;
ALTER TABLE users_v9 RENAME TO users;

CREATE TABLE groups_v9 (
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
);
INSERT INTO groups_v9 SELECT * FROM groups;
DROP TABLE groups;
ALTER TABLE groups_v9 RENAME TO groups;

CREATE INDEX users_team ON users (id, deleted_at, account_enabled);

CREATE VIEW group_members (group_id, member_id, member_type, added_at) AS
SELECT m.group_id, m.member_id, m.member_type, m.added_at
FROM group_members_all m
JOIN groups g ON g.id = m.group_id
WHERE g.deleted_at IS NULL;
