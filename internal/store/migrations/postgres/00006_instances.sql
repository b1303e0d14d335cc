-- +goose Up
-- Every `ipa serve` sharing the database: one row each, its heartbeat
-- refreshed every --heartbeat-interval. An instance whose heartbeat is older
-- than the lease TTL is dead, and live instances take over its pod leases.
CREATE TABLE instances (
    id           text   PRIMARY KEY,
    address      text,
    version      text   NOT NULL,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    draining     boolean NOT NULL DEFAULT false
);

-- The fencing epoch of a pod lease: it grows on every takeover, and a pod
-- fact is written only by the instance that holds the lease.
ALTER TABLE pod_leases ADD COLUMN epoch bigint NOT NULL DEFAULT 1;

-- Commands (stop, restart, handoff) for a pod another instance owns: the
-- intent is committed here, the owner is notified and acts, then deletes it.
CREATE TABLE pod_commands (
    id          text   PRIMARY KEY,
    task_id     uuid   NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    instance_id text   NOT NULL,
    command     text   NOT NULL,
    reason      text   NOT NULL,
    created_at  bigint NOT NULL
);
CREATE INDEX pod_commands_instance ON pod_commands (instance_id, created_at);

-- +goose Down
DROP TABLE pod_commands;
ALTER TABLE pod_leases DROP COLUMN epoch;
DROP TABLE instances;
