-- List performance with millions of jobs (see docs/list-performance.md). Numbered in step
-- with migrations/postgres/0002_list_performance.sql.

-- Sorting by a text or status column, ties broken by id: one index per sort key, so that a
-- page is an index range (the 0001 indexes on these columns continue with start_time and
-- serve filters with the default sort).
CREATE INDEX jobs_type_id      ON jobs (type, id);
CREATE INDEX jobs_namespace_id ON jobs (namespace, id);
CREATE INDEX jobs_status_id    ON jobs (status, id);

-- Sorting by end_time: one total order over a key that is never null (unfinished jobs
-- first ascending, last descending, as before), so that a cursor is one index range even
-- with a filter. The expression is the one the list query orders by (query.rs job_sort_key);
-- the trailing end_time lets SQLite read a page from the index alone (without it, it visits
-- the table for every entry an offset skips).
CREATE INDEX jobs_end_time_key ON jobs (COALESCE(end_time, -9223372036854775807), id, end_time);
DROP INDEX jobs_end_time;

-- job_meta gains the job's start_time (immutable) in its key, so that a meta filter with
-- the default sort reads its page, at any depth, from this one index without visiting jobs.
CREATE TABLE job_meta_by_time (
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    start_time INTEGER NOT NULL,
    job_id     BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, start_time, job_id)
) WITHOUT ROWID;
INSERT INTO job_meta_by_time (key, value, start_time, job_id)
    SELECT m.key, m.value, j.start_time, m.job_id FROM job_meta m JOIN jobs j ON j.id = m.job_id;
DROP TABLE job_meta;
ALTER TABLE job_meta_by_time RENAME TO job_meta;
CREATE INDEX job_meta_job ON job_meta (job_id);

-- How many jobs each (namespace, type, status) holds, kept by triggers in the transaction
-- that changes a job: `total_items` of a list filtered by namespace, type and/or status is a
-- sum over at most a few thousand rows instead of a count over millions.
CREATE TABLE job_counts (
    namespace TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    status    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (namespace, type, status)
) WITHOUT ROWID;
INSERT INTO job_counts (namespace, type, status, n)
    SELECT namespace, type, status, COUNT(*) FROM jobs GROUP BY namespace, type, status;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (namespace, type, status, n) VALUES (NEW.namespace, NEW.type, NEW.status, 1)
        ON CONFLICT (namespace, type, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET n = n - 1
        WHERE namespace = OLD.namespace AND type = OLD.type AND status = OLD.status;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF namespace, type, status ON jobs
    WHEN OLD.namespace IS NOT NEW.namespace OR OLD.type IS NOT NEW.type OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE job_counts SET n = n - 1
        WHERE namespace = OLD.namespace AND type = OLD.type AND status = OLD.status;
    INSERT INTO job_counts (namespace, type, status, n) VALUES (NEW.namespace, NEW.type, NEW.status, 1)
        ON CONFLICT (namespace, type, status) DO UPDATE SET n = n + 1;
END;

-- How many jobs each meta (key, tagged value) names: `total_items` of a list filtered by one
-- meta value alone (`meta.team=atlas`) without counting its rows. job_meta rows are written
-- with their job and deleted with it (a cascade, which fires these triggers too).
CREATE TABLE job_meta_counts (
    key   TEXT    NOT NULL,
    value TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (key, value)
) WITHOUT ROWID;
INSERT INTO job_meta_counts (key, value, n)
    SELECT key, value, COUNT(*) FROM job_meta GROUP BY key, value;

CREATE TRIGGER job_meta_count_insert AFTER INSERT ON job_meta
BEGIN
    INSERT INTO job_meta_counts (key, value, n) VALUES (NEW.key, NEW.value, 1)
        ON CONFLICT (key, value) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER job_meta_count_delete AFTER DELETE ON job_meta
BEGIN
    UPDATE job_meta_counts SET n = n - 1 WHERE key = OLD.key AND value = OLD.value;
END;
