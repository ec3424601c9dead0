-- The horizon stamp, corrected (numbered in step with migrations/sqlite/0008_feed_horizon.sql).
--
-- 0003 stamped each event with the xmax of the inserting statement's snapshot, taken to be
-- "the next transaction id". It is not: PostgreSQL sets a snapshot's xmax to the latest
-- *completed* transaction id + 1, which is below the ids of transactions that started but
-- have not finished. So a transaction T could stamp a horizon at or below the id of an
-- older transaction H still running (when a third transaction with an id between them was
-- still open at T's insert and has finished by the time a reader looks): the reader's xmin is
-- then H, T's horizon is below it, and the feed would show T's event while H's event (with a
-- horizon as small) is still uncommitted, and never show H's once it commits.
--
-- The stamp is now at least one above the inserting transaction's own id:
--   horizon = greatest(snapshot xmax, own transaction id + 1).
-- What the feed relies on then holds:
-- - An event of a transaction still running (id t >= the reader's xmin) has a horizon
--   above t, so above the xmin: the reader does not see it yet.
-- - An event with a horizon below the reader's xmin belongs to a transaction whose id is
--   below that xmin: finished, so the event is final (committed, or gone with a rollback).
-- - Per job: a later transaction stamps after the earlier one committed, so its snapshot's
--   xmax is above the earlier one's id and at least the earlier one's xmax: its horizon is
--   no smaller, and its seq is larger.
ALTER TABLE history ALTER COLUMN horizon SET DEFAULT greatest(
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
    pg_current_xact_id()::text::bigint + 1
);
