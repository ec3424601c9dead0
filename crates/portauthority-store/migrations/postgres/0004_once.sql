-- Commands that take effect at most once per key (numbered in step with
-- migrations/sqlite/0004_once.sql): a bus command by its CloudEvent source and id, an
-- HTTP request by its Idempotency-Key. Inserted first in the command's own transaction, so
-- that a concurrent duplicate waits on the key and then finds it; `answer` is the first
-- answer, kept for HTTP replays (JSON), NULL for bus commands. Rows go with their job
-- (`job_id`, NULL for a batch that spans jobs).
CREATE TABLE once (
    key         text        NOT NULL PRIMARY KEY,
    fingerprint text        NOT NULL,
    job_id      uuid,
    answer      text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX once_by_job ON once (job_id);
CREATE INDEX once_by_time ON once USING brin (created_at);

-- When the lease's holder first took it, kept while the same relay claims the job again.
-- A claim that finds a lease still in place knows a delivery may have gone out
-- unacknowledged since then (see relay.rs).
ALTER TABLE outbox_leases ADD COLUMN since timestamptz NOT NULL DEFAULT now();
