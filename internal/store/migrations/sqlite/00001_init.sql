-- +goose Up
-- Times are unix nanoseconds (INTEGER): exact round-trip and cheap keyset compares.
CREATE TABLE streams (
    id         TEXT    PRIMARY KEY,
    type       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- position is the rowid: the global commit order, allocated from positions.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    version        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    actor_id       TEXT    NOT NULL DEFAULT '',
    correlation_id TEXT    NOT NULL DEFAULT '',
    causation_id   TEXT    NOT NULL DEFAULT '',
    occurred_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_type_position ON events (type, position);

CREATE TABLE tasks (
    id             TEXT    PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
    title          TEXT    NOT NULL,
    title_lower    TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    phase          TEXT    NOT NULL,
    runtime        TEXT    NOT NULL,
    runtime_config TEXT    NOT NULL,
    restart_policy TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    pod_state      TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    closed_at      INTEGER,
    version        INTEGER NOT NULL
);
-- One index per filter+order the API offers, each ending in id so that keyset
-- pagination is an index range scan with no sort.
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
    actor_id   TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    task_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (actor_id, key)
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    actor_id     TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row: the last global position handed out (see allocatePositions).
CREATE TABLE positions (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
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
