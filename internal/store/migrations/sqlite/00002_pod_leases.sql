-- +goose Up
-- Which instance owns each running pod, and how to reattach to it after a
-- restart. One row per task: a pod has exactly one owner.
CREATE TABLE pod_leases (
    task_id    TEXT    PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
    owner      TEXT    NOT NULL,
    lease      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX pod_leases_owner ON pod_leases (owner);

-- Newest events of some types in one stream (a pod's crash history).
CREATE INDEX events_stream_type_version ON events (stream_id, type, version);

-- +goose Down
DROP INDEX events_stream_type_version;
DROP TABLE pod_leases;
