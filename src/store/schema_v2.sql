-- Schema version 2: mapping pins. See SCHEMA.md.

-- A mapping.groups entry that is a display name resolves to one group once, and the team
-- stays pinned to that group's id: a later group of the same name, a rename or a deletion
-- never moves the team to another group. A pin lives as long as its entry is in the mapping.
CREATE TABLE mapping_pins (
    entry               TEXT PRIMARY KEY,      -- the mapping.groups name, lower-cased
    group_id            TEXT NOT NULL,         -- the group it resolved to
    group_name          TEXT NOT NULL,         -- that group's display name when pinned
    pinned_at           TEXT NOT NULL
) WITHOUT ROWID;
