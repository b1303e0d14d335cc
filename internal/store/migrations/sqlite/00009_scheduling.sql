-- +goose Up
-- Scheduling lives in the store, so every instance obeys one limit.

-- Concurrency limits set by an admin: key is "global", "runtime:<name>" or
-- "label:<k>=<v>".
CREATE TABLE concurrency_limits (
    key        TEXT    PRIMARY KEY,
    lim        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The one row every scheduling decision locks (the single writer already
-- serialises them on SQLite; the row keeps one code path for both).
CREATE TABLE scheduler (
    id   INTEGER PRIMARY KEY,
    runs INTEGER NOT NULL DEFAULT 0
);
INSERT INTO scheduler (id, runs) VALUES (1, 0);

-- Pods asked to start that hold no pod lease yet: queued (granted = 0) or
-- given a slot and about to start on instance_id (granted = 1). A slot is a
-- granted row or a pod lease; the row goes when the lease is saved.
CREATE TABLE pod_queue (
    task_id     TEXT    PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
    instance_id TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    queued_at   INTEGER NOT NULL,
    granted     INTEGER NOT NULL DEFAULT 0,
    granted_at  INTEGER
);
CREATE INDEX pod_queue_order ON pod_queue (granted, priority DESC, queued_at, task_id);
CREATE INDEX pod_queue_instance ON pod_queue (instance_id, granted);

-- A task's scheduling priority (higher first), folded from its events.
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- The tasks a task depends on (a JSON array of ids, "[]" when none),
-- folded from its events; dependents are found with a text match.
ALTER TABLE tasks ADD COLUMN depends_on TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE tasks DROP COLUMN depends_on;
ALTER TABLE tasks DROP COLUMN priority;
DROP TABLE pod_queue;
DROP TABLE scheduler;
DROP TABLE concurrency_limits;
