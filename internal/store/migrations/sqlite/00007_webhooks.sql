-- +goose Up
-- Outbound webhook endpoints. position is the last global event position
-- this endpoint has been sent (or skipped by its type filter): delivery
-- resumes after it, so nothing is skipped across restarts. lease_owner and
-- lease_until name the one server that delivers to the endpoint.
CREATE TABLE webhook_endpoints (
    id          TEXT    PRIMARY KEY,
    url         TEXT    NOT NULL,
    types       TEXT    NOT NULL,
    secret      TEXT    NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    position    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
);

-- The delivery log: one row per event sent to an endpoint, updated on every
-- attempt.
CREATE TABLE webhook_deliveries (
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    response_status INTEGER,
    last_error      TEXT    NOT NULL DEFAULT '',
    last_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, position)
);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
