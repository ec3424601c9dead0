-- Commands that take effect at most once per key (numbered in step with
-- migrations/postgres/0004_once.sql): a bus command by its CloudEvent source and id, an
-- HTTP request by its Idempotency-Key. Written in the command's own transaction; `answer`
-- is the first answer, kept for HTTP replays (JSON), NULL for bus commands. Rows go with
-- their job (`job_id`, NULL for a batch that spans jobs).
CREATE TABLE once (
    key         TEXT    NOT NULL PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    job_id      BLOB,
    answer      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX once_by_job ON once (job_id);
CREATE INDEX once_by_time ON once (created_at);

-- When the lease's holder first took it (Unix milliseconds), kept while the same relay
-- claims the job again. A claim that finds a lease still in place knows a delivery may have
-- gone out unacknowledged since then (see relay.rs).
ALTER TABLE outbox_leases ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
