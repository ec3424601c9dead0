-- List performance with millions of jobs (see docs/list-performance.md). Numbered in step
-- with migrations/sqlite/0002_list_performance.sql.

-- Sorting by a text or status column, ties broken by id: one index per sort key.
CREATE INDEX jobs_type_id      ON jobs (type, id);
CREATE INDEX jobs_namespace_id ON jobs (namespace, id);
CREATE INDEX jobs_status_id    ON jobs (status, id);

-- Sorting by end_time: one total order over a key that is never null (unfinished jobs
-- first ascending, last descending, as before), so that a cursor is one index range even
-- with a filter. The expression is the one the list query orders by (query.rs job_sort_key);
-- INCLUDE (end_time) makes it usable for index-only scans (PostgreSQL wants every column the
-- query names in the index, not only the expression).
CREATE INDEX jobs_end_time_key ON jobs ((COALESCE(end_time, '-infinity'::timestamptz)), id)
    INCLUDE (end_time);
DROP INDEX jobs_end_time;

-- `meta.<key>=<value>` filters read job_meta, as on SQLite: one row per top-level scalar meta
-- value, tagged with its JSON type ('s:text', 'n:123', 'b:true'), with the job's start_time
-- (immutable) in the key so that a meta filter with the default sort reads its page, at any
-- depth, from one index (index-only). It replaces the GIN index over meta: a GIN match
-- must visit every matching heap row, which made counting 100,000 matches cost 250 ms.
-- The store writes the rows with the job, tagged by portauthority_core (Meta::index_entries);
-- pa_meta_tag tags the same way in SQL, for the backfill below and for bulk loads (123, 123.0
-- and 1.23e2 are all 'n:123'; other numbers in their shortest round-trip decimal form,
-- without exponent).
CREATE FUNCTION pa_meta_tag(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'string'  THEN 's:' || (v #>> '{}')
        WHEN 'boolean' THEN 'b:' || (v #>> '{}')
        WHEN 'number'  THEN 'n:' || CASE
            WHEN (v #>> '{}')::numeric = trunc((v #>> '{}')::numeric)
                 AND (v #>> '{}')::numeric >= -9223372036854775808
                 AND (v #>> '{}')::numeric < 18446744073709551616
                THEN trunc((v #>> '{}')::numeric)::text
            ELSE (((v #>> '{}')::numeric)::float8::text)::numeric::text
        END
    END
$$;

CREATE TABLE job_meta (
    key        text        COLLATE "C" NOT NULL,
    value      text        COLLATE "C" NOT NULL,
    start_time timestamptz NOT NULL,
    job_id     uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, start_time, job_id)
);
CREATE INDEX job_meta_job ON job_meta (job_id);

-- How many jobs each (namespace, type, status) holds: `total_items` of a list filtered by
-- namespace, type and/or status is a sum over at most a few thousand rows instead of a count
-- over millions. Writers only append deltas (no row that concurrent transactions would
-- queue on): the store with each new job (in the statement that inserts it), the triggers
-- below for a status change or a delete. Each server folds the deltas into job_counts about
-- once a second, and a count sums both tables in one snapshot, so it is exact at any moment.
CREATE TABLE job_counts (
    namespace text     COLLATE "C" NOT NULL,
    type      text     COLLATE "C" NOT NULL,
    status    smallint NOT NULL,
    n         bigint   NOT NULL,
    PRIMARY KEY (namespace, type, status)
);
CREATE TABLE job_count_deltas (
    namespace text     COLLATE "C" NOT NULL,
    type      text     COLLATE "C" NOT NULL,
    status    smallint NOT NULL,
    n         bigint   NOT NULL
);

CREATE FUNCTION pa_job_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (namespace, type, status, n)
    SELECT namespace, type, status, -count(*) FROM old_jobs GROUP BY namespace, type, status;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pa_job_counts_delete();

-- Row level, with a WHEN the executor checks without calling the function: most updates
-- of a job (its counters) leave these columns alone and cost nothing here.
CREATE FUNCTION pa_job_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_count_deltas (namespace, type, status, n)
    VALUES (OLD.namespace, OLD.type, OLD.status, -1), (NEW.namespace, NEW.type, NEW.status, 1);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF namespace, type, status ON jobs
    FOR EACH ROW
    WHEN (OLD.namespace IS DISTINCT FROM NEW.namespace OR OLD.type IS DISTINCT FROM NEW.type
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION pa_job_counts_update();

-- How many jobs each meta (key, tagged value) names: `total_items` of a list filtered by one
-- meta value alone (`meta.team=atlas`) without counting its rows. Deltas and folding as for
-- job_counts: the store writes +1 deltas with a new job, a trigger -1 deltas when job_meta
-- rows go (with their job, by cascade).
CREATE TABLE job_meta_counts (
    key   text   COLLATE "C" NOT NULL,
    value text   COLLATE "C" NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (key, value)
);
CREATE TABLE job_meta_count_deltas (
    key   text   COLLATE "C" NOT NULL,
    value text   COLLATE "C" NOT NULL,
    n     bigint NOT NULL
);

CREATE FUNCTION pa_job_meta_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_meta_count_deltas (key, value, n)
    SELECT key, value, -count(*) FROM old_meta GROUP BY key, value;
    RETURN NULL;
END
$$;
CREATE TRIGGER job_meta_count_delete AFTER DELETE ON job_meta
    REFERENCING OLD TABLE AS old_meta
    FOR EACH STATEMENT EXECUTE FUNCTION pa_job_meta_counts_delete();

-- The triggers on jobs exist (and hold their lock on jobs until this migration commits)
-- before the backfills read jobs, so no concurrent write falls between the two.
INSERT INTO job_meta (key, value, start_time, job_id)
SELECT e.key, pa_meta_tag(e.value), j.start_time, j.id
FROM jobs j, jsonb_each(j.meta::jsonb) e
WHERE jsonb_typeof(e.value) IN ('string', 'number', 'boolean');

INSERT INTO job_meta_counts (key, value, n)
SELECT key, value, count(*) FROM job_meta GROUP BY key, value;

INSERT INTO job_counts (namespace, type, status, n)
SELECT namespace, type, status, count(*) FROM jobs GROUP BY namespace, type, status;

DROP INDEX jobs_meta;
