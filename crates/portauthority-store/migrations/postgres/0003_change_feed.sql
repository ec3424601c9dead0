-- The change feed and per-job event order (numbered in step with
-- migrations/sqlite/0003_change_feed.sql).
--
-- Every history event carries `job_seq`: 1, 2, 3, ... within its job, assigned by the
-- command layer while the job row is locked, and the job row keeps the last one
-- (`last_seq`).
--
-- `horizon` orders the feed (a transaction id, as bigint). `seq` (a bigserial) is not commit order: a transaction can
-- take seq 10 and commit after the one that took seq 11, and a reader that had moved past
-- 11 would never see 10. Each event is stamped instead with the xmax of the snapshot of the
-- statement that inserts it: the next transaction id, taken after its transaction holds
-- the job's lock and has a transaction id of its own. The feed reads in (horizon, seq)
-- order, only rows whose horizon is below the xmin of its own snapshot (the oldest running
-- transaction). A transaction still running, or not yet started, has an id >= that xmin and
-- so stamps a horizon above it: no event can commit behind a reader. Within a job, a later
-- transaction takes the lock after the earlier one committed, so its horizon is no smaller
-- and its seq larger: the feed keeps each job's order. (See postgres/feed.rs.)
ALTER TABLE jobs ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN job_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN horizon bigint NOT NULL
    DEFAULT pg_snapshot_xmax(pg_current_snapshot())::text::bigint;

UPDATE history h SET job_seq = n.rn
FROM (SELECT seq, row_number() OVER (PARTITION BY job_id ORDER BY seq) AS rn FROM history) n
WHERE h.seq = n.seq;
UPDATE jobs j SET last_seq = c.n
FROM (SELECT job_id, max(job_seq) AS n FROM history GROUP BY job_id) c
WHERE j.id = c.job_id;

-- A BRIN index: horizons grow with the table's physical order, so a summary per range of
-- pages finds the feed's tail, and it costs writers almost nothing (a B-tree over
-- (horizon, seq), one more insert per event, cost 6-15 % of the write rate at 16 clients).
-- The feed reads a window of horizons at a time (postgres/feed.rs).
CREATE INDEX history_feed ON history USING brin (horizon) WITH (pages_per_range = 32, autosummarize = on);

-- No event has a horizon below this: where a read from the start begins. (Rows written
-- later stamp a horizon of at least the xmin of now.)
CREATE TABLE feed_floor (horizon bigint NOT NULL);
INSERT INTO feed_floor
SELECT COALESCE(min(horizon), pg_snapshot_xmin(pg_current_snapshot())::text::bigint) FROM history;

ALTER TABLE outbox ADD COLUMN job_id uuid, ADD COLUMN job_seq bigint;
UPDATE outbox o SET job_id = h.job_id, job_seq = h.job_seq FROM history h WHERE h.seq = o.seq;
ALTER TABLE outbox ALTER COLUMN job_id SET NOT NULL, ALTER COLUMN job_seq SET NOT NULL;
-- No index on job_id: claims read the outbox in `seq` order (its primary key); see the
-- SQLite migration.

-- A relay holds a job's outbox rows until `until`; while it does, no other relay claims
-- that job.
CREATE TABLE outbox_leases (
    job_id uuid        NOT NULL PRIMARY KEY,
    relay  text        NOT NULL,
    until  timestamptz NOT NULL
);
