-- +goose Up
-- Every `ipa serve` sharing the database: one row each, its heartbeat
-- refreshed every --heartbeat-interval. SQLite has a single instance; the
-- table lists it all the same.
CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,
    address      TEXT,
    version      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    draining     INTEGER NOT NULL DEFAULT 0
);

-- The fencing epoch of a pod lease: it grows on every takeover.
ALTER TABLE pod_leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;

-- Commands for a pod another instance owns (PostgreSQL only in practice).
CREATE TABLE pod_commands (
    id          TEXT    PRIMARY KEY,
    task_id     TEXT    NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    instance_id TEXT    NOT NULL,
    command     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX pod_commands_instance ON pod_commands (instance_id, created_at);

-- +goose Down
DROP TABLE pod_commands;
ALTER TABLE pod_leases DROP COLUMN epoch;
DROP TABLE instances;
