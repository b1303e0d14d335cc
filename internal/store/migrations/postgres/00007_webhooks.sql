-- +goose Up
-- Outbound webhook endpoints. position is the last global event position
-- this endpoint has been sent (or skipped by its type filter): delivery
-- resumes after it, so nothing is skipped across restarts. lease_owner and
-- lease_until name the one server that delivers to the endpoint.
CREATE TABLE webhook_endpoints (
    id          text    PRIMARY KEY,
    url         text    NOT NULL,
    types       text    NOT NULL,
    secret      text    NOT NULL,
    paused      boolean NOT NULL DEFAULT false,
    position    bigint  NOT NULL,
    created_at  bigint  NOT NULL,
    created_by  text    NOT NULL,
    lease_owner text,
    lease_until bigint
);

-- The delivery log: one row per event sent to an endpoint, updated on every
-- attempt.
CREATE TABLE webhook_deliveries (
    endpoint_id     text    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    position        bigint  NOT NULL,
    event_id        text    NOT NULL,
    event_type      text    NOT NULL,
    status          text    NOT NULL,
    attempts        integer NOT NULL,
    response_status integer,
    last_error      text    NOT NULL DEFAULT '',
    last_attempt_at bigint  NOT NULL,
    PRIMARY KEY (endpoint_id, position)
);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
