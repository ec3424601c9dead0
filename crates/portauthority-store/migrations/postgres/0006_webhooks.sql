-- Webhooks (numbered in step with migrations/sqlite/0006_webhooks.sql; 0005 is another
-- change's number: migration runners apply every version they have not applied, in order,
-- so a gap or a late lower number is fine).
--
-- A webhook subscribes a URL to the events of the jobs in a namespace (or under it);
-- `events` is a JSON array of CloudEvent types, NULL for all. `secret` is the signing key
-- as shown once to its creator (`whsec_` + base64). `failing_since` is when its current run
-- of failed attempts began (NULL while it delivers).
CREATE TABLE webhooks (
    id              uuid        NOT NULL PRIMARY KEY,
    url             text        NOT NULL,
    namespace       text,
    events          text,
    description     text,
    secret          text        NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL,
    failing_since   timestamptz
);

-- One delivery per (webhook, event): the relay may hand the fan-out the same event again,
-- and the unique key makes that a no-op. `body` is the exact JSON every attempt sends.
-- `attempt` counts the attempts made; `status_code`, `latency_ms`, `error` are the last
-- one's. A sender holds a claimed delivery until `lease_until`.
CREATE TABLE webhook_deliveries (
    id              uuid        NOT NULL PRIMARY KEY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    namespace       text        NOT NULL,
    body            text        NOT NULL,
    attempt         integer     NOT NULL DEFAULT 0,
    state           text        NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    next_attempt_at timestamptz,
    status_code     integer,
    latency_ms      bigint,
    error           text,
    created_at      timestamptz NOT NULL,
    lease_until     timestamptz,
    CONSTRAINT webhook_deliveries_event UNIQUE (webhook_id, event_id)
);
-- Claims read the due pending deliveries in due order; the others are never scanned.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- Every attempt, for the delivery log; `state` and `next_attempt_at` are the delivery's
-- right after it.
CREATE TABLE webhook_attempts (
    delivery_id     uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt         integer     NOT NULL,
    webhook_id      uuid        NOT NULL,
    time            timestamptz NOT NULL,
    state           text        NOT NULL,
    status_code     integer,
    latency_ms      bigint,
    error           text,
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, time);
