-- +goose Up
-- Scheduling lives in the store, so every instance obeys one limit.

-- Concurrency limits set by an admin: key is "global", "runtime:<name>" or
-- "label:<k>=<v>".
CREATE TABLE concurrency_limits (
    key        text    PRIMARY KEY,
    lim        integer NOT NULL,
    updated_at bigint  NOT NULL
);

-- The one row every scheduling decision locks (SELECT ... FOR UPDATE):
-- admissions and grants of every instance are serial, so counts of slots
-- against limits are never stale when a slot is given.
CREATE TABLE scheduler (
    id   integer PRIMARY KEY,
    runs bigint  NOT NULL DEFAULT 0
);
INSERT INTO scheduler (id, runs) VALUES (1, 0);

-- Pods asked to start that hold no pod lease yet: queued (granted false) or
-- given a slot and about to start on instance_id (granted true). A slot is a
-- granted row or a pod lease; the row goes when the lease is saved.
CREATE TABLE pod_queue (
    task_id     uuid    PRIMARY KEY REFERENCES streams (id) ON DELETE CASCADE,
    instance_id text    NOT NULL,
    trigger     text    NOT NULL,
    priority    integer NOT NULL DEFAULT 0,
    queued_at   bigint  NOT NULL,
    granted     boolean NOT NULL DEFAULT false,
    granted_at  bigint
);
CREATE INDEX pod_queue_order ON pod_queue (granted, priority DESC, queued_at, task_id);
CREATE INDEX pod_queue_instance ON pod_queue (instance_id, granted);

-- A task's scheduling priority (higher first), folded from its events.
ALTER TABLE tasks ADD COLUMN priority integer NOT NULL DEFAULT 0;

-- The tasks a task depends on (a JSON array of ids, "[]" when none),
-- folded from its events; dependents are found with a text match.
ALTER TABLE tasks ADD COLUMN depends_on text NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE tasks DROP COLUMN depends_on;
ALTER TABLE tasks DROP COLUMN priority;
DROP TABLE pod_queue;
DROP TABLE scheduler;
DROP TABLE concurrency_limits;
