-- Port Authority schema, PostgreSQL flavour. Numbered in step with migrations/sqlite.
-- Statuses are codes 0..4 (see Status::code). Text that is sorted is COLLATE "C": byte order,
-- as SQLite sorts, whatever the database default. `meta` is `json` so the client's key order
-- survives; an expression index over its jsonb form serves `meta.<key>=<value>` filters.

CREATE TABLE jobs (
    id                 uuid        NOT NULL PRIMARY KEY,
    correlation_id     text COLLATE "C",
    type               text        COLLATE "C" NOT NULL,
    namespace          text        COLLATE "C" NOT NULL,
    status             smallint    NOT NULL,
    status_explicit    boolean     NOT NULL DEFAULT false,
    auto_complete      boolean     NOT NULL,
    start_time         timestamptz NOT NULL,
    end_time           timestamptz,
    tasks_total        bigint      NOT NULL DEFAULT 0,
    tasks_pending      bigint      NOT NULL DEFAULT 0,
    tasks_in_progress  bigint      NOT NULL DEFAULT 0,
    tasks_failed       bigint      NOT NULL DEFAULT 0,
    tasks_completed    bigint      NOT NULL DEFAULT 0,
    tasks_cancelled    bigint      NOT NULL DEFAULT 0,
    meta               json        NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

CREATE INDEX jobs_start_time     ON jobs (start_time, id);
-- NULLS FIRST: the same order as SQLite gives (an unfinished job sorts first ascending).
CREATE INDEX jobs_end_time       ON jobs (end_time NULLS FIRST, id);
CREATE INDEX jobs_created_at     ON jobs (created_at, id);
CREATE INDEX jobs_updated_at     ON jobs (updated_at, id);
CREATE INDEX jobs_namespace      ON jobs (namespace, start_time, id);
CREATE INDEX jobs_type           ON jobs (type, start_time, id);
CREATE INDEX jobs_status         ON jobs (status, start_time, id);
CREATE INDEX jobs_correlation_id ON jobs (correlation_id, start_time, id) WHERE correlation_id IS NOT NULL;
CREATE INDEX jobs_meta           ON jobs USING gin ((meta::jsonb) jsonb_path_ops);

CREATE TABLE tasks (
    id               uuid        NOT NULL PRIMARY KEY,
    job_id           uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    type             text        COLLATE "C" NOT NULL,
    namespace        text        COLLATE "C" NOT NULL,
    status           smallint    NOT NULL,
    attempt          bigint      NOT NULL DEFAULT 1,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    progress_current bigint,
    progress_total   bigint,
    error            text,
    meta             json        NOT NULL,
    timeout_seconds  bigint,
    heartbeat_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX tasks_job_start_time ON tasks (job_id, start_time, id);
CREATE INDEX tasks_job_status     ON tasks (job_id, status, start_time, id);

CREATE TABLE history (
    seq              bigserial   PRIMARY KEY,
    job_id           uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_id          uuid,
    kind             text        NOT NULL,
    time             timestamptz NOT NULL,
    from_status      smallint,
    to_status        smallint,
    reason           text,
    message          text,
    data             json,
    progress_current bigint,
    progress_total   bigint
);
CREATE INDEX history_job  ON history (job_id, seq);
CREATE INDEX history_task ON history (task_id, seq) WHERE task_id IS NOT NULL;

-- Transactional outbox; see migrations/sqlite/0001_init.sql.
CREATE TABLE outbox (
    seq bigint NOT NULL PRIMARY KEY REFERENCES history (seq) ON DELETE CASCADE
);
