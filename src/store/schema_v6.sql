-- Schema version 6: memberships keyed by integers (issue 10 part 2). A million links each
-- carried two 36-character ids and a text timestamp: 115 MiB of a 100,000-user database.
-- Now every id a membership names has one integer key in `object_keys`, and `memberships`
-- holds pairs of keys and the time as Unix seconds. `group_members_all` and the public
-- `group_members` are views that show the ids and the time as before, and a query on them by
-- id still goes through the indexes (the id's key, then the membership's primary key).
-- See SCHEMA.md.

CREATE TABLE object_keys (
    key                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE   -- a group's or a member's object id
);

CREATE TABLE memberships (
    group_key           INTEGER NOT NULL,      -- object_keys.key of the group
    member_key          INTEGER NOT NULL,      -- object_keys.key of the member
    member_type         TEXT NOT NULL,         -- user | group | device | servicePrincipal | orgContact
    added_at            INTEGER NOT NULL,      -- Unix seconds
    seen_generation     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_key, member_key)
) WITHOUT ROWID;

INSERT INTO object_keys (id)
SELECT group_id FROM group_members_all UNION SELECT member_id FROM group_members_all;

INSERT INTO memberships (group_key, member_key, member_type, added_at, seen_generation)
SELECT g.key, m.key, a.member_type, coalesce(unixepoch(a.added_at), 0), a.seen_generation
FROM group_members_all a
JOIN object_keys g ON g.id = a.group_id
JOIN object_keys m ON m.id = a.member_id;

DROP VIEW group_members;
DROP INDEX group_members_nested;
DROP TABLE group_members_all;

-- Every stored membership, those hidden by a soft-deleted group's tombstone included.
CREATE VIEW group_members_all (group_id, member_id, member_type, added_at, seen_generation) AS
SELECT g.id, m.id, l.member_type, strftime('%Y-%m-%dT%H:%M:%SZ', l.added_at, 'unixepoch'),
       l.seen_generation
FROM memberships l
JOIN object_keys g ON g.key = l.group_key
JOIN object_keys m ON m.key = l.member_key;

CREATE VIEW group_members (group_id, member_id, member_type, added_at) AS
SELECT m.group_id, m.member_id, m.member_type, m.added_at
FROM group_members_all m
JOIN groups g ON g.id = m.group_id
WHERE g.deleted_at IS NULL;

-- Group-in-group links only (a few per cent of all links): `explain` walks the nesting below
-- the mapped groups with it, and the team's recursion reads it instead of every member row
-- of each group it reaches.
CREATE INDEX memberships_nested ON memberships (group_key, member_key)
    WHERE member_type = 'group';
