-- Schema version 5: the first import into an empty database is a baseline (issue 10).
-- While a resource's first full round runs, its memberships are not audited one row per
-- link: when the round completes, one `membership`/`added` row per group records how many
-- members it was imported with. Every later change is audited per row. See SCHEMA.md.
-- The flag lives with the resource's sync state, for every kind of full round, so the
-- snapshot's own copy goes (it was never written: no snapshot has run yet).
ALTER TABLE sync_state ADD COLUMN baseline INTEGER NOT NULL DEFAULT 0;
ALTER TABLE snapshot_state DROP COLUMN baseline;
