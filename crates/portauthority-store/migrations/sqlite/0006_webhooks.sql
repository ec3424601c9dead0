-- Webhooks (numbered in step with migrations/postgres/0006_webhooks.sql, where the tables
-- are explained; 0005 is another change's number: the runner applies every version it has
-- not applied, in order, so a gap or a late lower number is fine). Ids are 16-byte BLOBs,
-- times Unix milliseconds, `events` a JSON array of CloudEvent types (NULL: all).
CREATE TABLE webhooks (
    id              BLOB    NOT NULL PRIMARY KEY,
    url             TEXT    NOT NULL,
    namespace       TEXT,
    events          TEXT,
    description     TEXT,
    secret          TEXT    NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    failing_since   INTEGER
);

CREATE TABLE webhook_deliveries (
    id              BLOB    NOT NULL PRIMARY KEY,
    webhook_id      BLOB    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    namespace       TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    next_attempt_at INTEGER,
    status_code     INTEGER,
    latency_ms      INTEGER,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    lease_until     INTEGER,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    delivery_id     BLOB    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    webhook_id      BLOB    NOT NULL,
    time            INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    status_code     INTEGER,
    latency_ms      INTEGER,
    error           TEXT,
    next_attempt_at INTEGER,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, time);
