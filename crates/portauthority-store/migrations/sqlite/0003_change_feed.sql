-- The change feed and per-job event order (numbered in step with
-- migrations/postgres/0003_change_feed.sql).
--
-- Every history event carries `job_seq`: 1, 2, 3, ... within its job, assigned by the
-- command layer while the job is locked (here: by the one writer), and the job row keeps
-- the last one (`last_seq`). The feed reads history in `seq` order, which on SQLite is
-- commit order: one writer commits one group after the other.
ALTER TABLE jobs ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN job_seq INTEGER NOT NULL DEFAULT 0;

UPDATE history SET job_seq = n.rn
FROM (SELECT seq, row_number() OVER (PARTITION BY job_id ORDER BY seq) AS rn FROM history) AS n
WHERE history.seq = n.seq;
UPDATE jobs SET last_seq = c.n
FROM (SELECT job_id, max(job_seq) AS n FROM history GROUP BY job_id) AS c
WHERE jobs.id = c.job_id;

-- The outbox names its job and the event's place in it, so that relays claim whole jobs
-- and publish each job's events in order. No index on job_id: claims read the outbox in
-- `seq` order (its primary key), and an index keyed by job would take a random insert per
-- published event (measured: a quarter of the single status update rate).
CREATE TABLE outbox_v3 (
    seq     INTEGER NOT NULL PRIMARY KEY REFERENCES history (seq) ON DELETE CASCADE,
    job_id  BLOB    NOT NULL,
    job_seq INTEGER NOT NULL
);
INSERT INTO outbox_v3 (seq, job_id, job_seq)
SELECT o.seq, h.job_id, h.job_seq FROM outbox o JOIN history h ON h.seq = o.seq;
DROP TABLE outbox;
ALTER TABLE outbox_v3 RENAME TO outbox;

-- A relay holds a job's outbox rows until `until` (Unix milliseconds); while it does, no
-- other relay claims that job.
CREATE TABLE outbox_leases (
    job_id BLOB    NOT NULL PRIMARY KEY,
    relay  TEXT    NOT NULL,
    until  INTEGER NOT NULL
);
