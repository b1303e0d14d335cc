-- +goose Up
-- Times are unix nanoseconds (BIGINT): exact round-trip and cheap keyset compares.
CREATE TABLE streams (
    id         uuid   PRIMARY KEY,
    type       text   NOT NULL,
    version    bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- position is the global commit order, allocated from positions (never a sequence).
CREATE TABLE events (
    position       bigint PRIMARY KEY,
    id             uuid   NOT NULL UNIQUE,
    stream_id      uuid   NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    version        bigint NOT NULL,
    type           text   NOT NULL,
    data           jsonb  NOT NULL,
    actor_id       text   NOT NULL DEFAULT '',
    correlation_id text   NOT NULL DEFAULT '',
    causation_id   text   NOT NULL DEFAULT '',
    occurred_at    bigint NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_type_position ON events (type, position);

-- Titles sort and compare bytewise (COLLATE "C") so the order is the same as
-- SQLite's and Go's, whatever the server's locale.
CREATE TABLE tasks (
    id             uuid   PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
    title          text   COLLATE "C" NOT NULL,
    title_lower    text   COLLATE "C" NOT NULL,
    description    text   NOT NULL,
    status         text   NOT NULL,
    phase          text   NOT NULL,
    runtime        text   NOT NULL,
    runtime_config jsonb  NOT NULL,
    restart_policy jsonb  NOT NULL,
    metadata       jsonb  NOT NULL,
    pod_state      text   NOT NULL,
    created_by     text   NOT NULL,
    created_at     bigint NOT NULL,
    updated_at     bigint NOT NULL,
    closed_at      bigint,
    version        bigint NOT NULL
);
CREATE INDEX tasks_updated ON tasks (updated_at, id);
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_title ON tasks (title, id);
CREATE INDEX tasks_status_updated ON tasks (status, updated_at, id);
CREATE INDEX tasks_status_created ON tasks (status, created_at, id);
CREATE INDEX tasks_status_title ON tasks (status, title, id);
CREATE INDEX tasks_phase_updated ON tasks (phase, updated_at, id);
CREATE INDEX tasks_phase_created ON tasks (phase, created_at, id);
CREATE INDEX tasks_created_by_updated ON tasks (created_by, updated_at, id);
CREATE INDEX tasks_created_by_created ON tasks (created_by, created_at, id);
CREATE INDEX tasks_runtime_updated ON tasks (runtime, updated_at, id);
CREATE INDEX tasks_pod_state ON tasks (pod_state);

CREATE TABLE idempotency_keys (
    actor_id   text   NOT NULL,
    key        text   NOT NULL,
    task_id    uuid   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (actor_id, key)
);

CREATE TABLE api_tokens (
    id           text   PRIMARY KEY,
    actor_id     text   NOT NULL,
    role         text   NOT NULL,
    hash         text   NOT NULL UNIQUE,
    created_at   bigint NOT NULL,
    revoked_at   bigint,
    last_used_at bigint
);

CREATE TABLE settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);

-- One row: the last global position handed out (see allocatePositions).
CREATE TABLE positions (
    id   integer PRIMARY KEY CHECK (id = 1),
    last bigint  NOT NULL
);
INSERT INTO positions (id, last) VALUES (1, 0);

-- +goose Down
DROP TABLE positions;
DROP TABLE settings;
DROP TABLE api_tokens;
DROP TABLE idempotency_keys;
DROP TABLE tasks;
DROP TABLE events;
DROP TABLE streams;
