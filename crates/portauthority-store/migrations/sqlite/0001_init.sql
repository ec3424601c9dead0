-- Port Authority schema, SQLite flavour. Numbered in step with migrations/postgres.
-- Ids are 16-byte BLOBs (UUID bytes; byte order is the textual order), times are
-- milliseconds since the Unix epoch (UTC), statuses are codes 0..4 (see Status::code).

CREATE TABLE jobs (
    id                 BLOB    NOT NULL PRIMARY KEY,
    correlation_id     TEXT,
    type               TEXT    NOT NULL,
    namespace          TEXT    NOT NULL,
    status             INTEGER NOT NULL,
    status_explicit    INTEGER NOT NULL DEFAULT 0,
    auto_complete      INTEGER NOT NULL,
    start_time         INTEGER NOT NULL,
    end_time           INTEGER,
    tasks_total        INTEGER NOT NULL DEFAULT 0,
    tasks_pending      INTEGER NOT NULL DEFAULT 0,
    tasks_in_progress  INTEGER NOT NULL DEFAULT 0,
    tasks_failed       INTEGER NOT NULL DEFAULT 0,
    tasks_completed    INTEGER NOT NULL DEFAULT 0,
    tasks_cancelled    INTEGER NOT NULL DEFAULT 0,
    meta               TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) WITHOUT ROWID;

-- One index per sort key (ties broken by id), and filter indexes that also serve the
-- default sort.
CREATE INDEX jobs_start_time     ON jobs (start_time, id);
CREATE INDEX jobs_end_time       ON jobs (end_time, id);
CREATE INDEX jobs_created_at     ON jobs (created_at, id);
CREATE INDEX jobs_updated_at     ON jobs (updated_at, id);
CREATE INDEX jobs_namespace      ON jobs (namespace, start_time, id);
CREATE INDEX jobs_type           ON jobs (type, start_time, id);
CREATE INDEX jobs_status         ON jobs (status, start_time, id);
CREATE INDEX jobs_correlation_id ON jobs (correlation_id, start_time, id) WHERE correlation_id IS NOT NULL;

-- Top-level scalar meta values, for `meta.<key>=<value>` filters. `value` is tagged with
-- its JSON type: 's:text', 'n:123', 'b:true' (see Meta::index_entries).
CREATE TABLE job_meta (
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    job_id BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, job_id)
) WITHOUT ROWID;
CREATE INDEX job_meta_job ON job_meta (job_id);

CREATE TABLE tasks (
    id               BLOB    NOT NULL PRIMARY KEY,
    job_id           BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    type             TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    status           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    start_time       INTEGER NOT NULL,
    end_time         INTEGER,
    progress_current INTEGER,
    progress_total   INTEGER,
    error            TEXT,
    meta             TEXT    NOT NULL,
    timeout_seconds  INTEGER,
    heartbeat_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX tasks_job_start_time ON tasks (job_id, start_time, id);
CREATE INDEX tasks_job_status     ON tasks (job_id, status, start_time, id);

-- Append-only. `seq` is the installation-wide order of changes and the change feed.
CREATE TABLE history (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_id          BLOB,
    kind             TEXT    NOT NULL,
    time             INTEGER NOT NULL,
    from_status      INTEGER,
    to_status        INTEGER,
    reason           TEXT,
    message          TEXT,
    data             TEXT,
    progress_current INTEGER,
    progress_total   INTEGER
);
CREATE INDEX history_job  ON history (job_id, seq);
CREATE INDEX history_task ON history (task_id, seq) WHERE task_id IS NOT NULL;

-- Transactional outbox: the history events (created, task added, status changed) still
-- to be published. Written in the same transaction as the change; a relay publishes in
-- seq order and deletes.
CREATE TABLE outbox (
    seq INTEGER NOT NULL PRIMARY KEY REFERENCES history (seq) ON DELETE CASCADE
);
