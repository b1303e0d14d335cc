-- +goose Up
-- Archived tasks are hidden from lists unless asked for (0/1).
ALTER TABLE tasks ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;

-- How many task rows have each (status, phase, archived): kept by the write
-- path in the same transaction as the row change, so counting tasks by
-- status or phase never scans the tasks table.
CREATE TABLE task_counts (
    status   TEXT    NOT NULL,
    phase    TEXT    NOT NULL,
    archived INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (status, phase, archived)
);
INSERT INTO task_counts (status, phase, archived, n)
    SELECT status, phase, archived, COUNT(*) FROM tasks GROUP BY status, phase, archived;

-- One task's events paged by global position (Query.events with taskId).
CREATE INDEX events_stream_position ON events (stream_id, position);

-- Pruning closed tasks: find them by close time, and drop their idempotency keys.
CREATE INDEX tasks_closed ON tasks (closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);

-- +goose Down
DROP INDEX idempotency_keys_task;
DROP INDEX tasks_closed;
DROP INDEX events_stream_position;
DROP TABLE task_counts;
ALTER TABLE tasks DROP COLUMN archived;
