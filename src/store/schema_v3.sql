-- Schema version 3: `group_members` shows the direct memberships of live groups only.
-- The rows of soft-deleted groups stay in the internal table `group_members_all`, hidden, so
-- a restore brings them back (Graph does not report them again). See SCHEMA.md.

ALTER TABLE group_members RENAME TO group_members_all;

CREATE VIEW group_members (group_id, member_id, member_type, added_at) AS
SELECT m.group_id, m.member_id, m.member_type, m.added_at
FROM group_members_all m
JOIN groups g ON g.id = m.group_id
WHERE g.deleted_at IS NULL;

-- Group-in-group links only (a few per cent of all links): `explain` walks the nesting below
-- the mapped groups with it, and the team's recursion reads it instead of every member row
-- of each group it reaches.
CREATE INDEX group_members_nested ON group_members_all (group_id, member_id)
    WHERE member_type = 'group';

