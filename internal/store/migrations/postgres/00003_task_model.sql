-- +goose Up
-- Labels, parent tasks and deadlines. labels holds the task's label set as a
-- JSON object (what a read returns); task_labels holds the same pairs one per
-- row, so a label selector is an index lookup on (key, value).
ALTER TABLE tasks ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN parent_id uuid;
ALTER TABLE tasks ADD COLUMN deadline bigint;

CREATE TABLE task_labels (
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    key     text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (task_id, key)
);
CREATE INDEX task_labels_key_value ON task_labels (key, value, task_id);

-- Children of a task, in the list orders.
CREATE INDEX tasks_parent_updated ON tasks (parent_id, updated_at, id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_parent_created ON tasks (parent_id, created_at, id) WHERE parent_id IS NOT NULL;
-- deadlineBefore, and the deadline timer: open tasks whose deadline passed.
CREATE INDEX tasks_deadline ON tasks (deadline, id) WHERE deadline IS NOT NULL;
CREATE INDEX tasks_open_deadline ON tasks (deadline, id) WHERE deadline IS NOT NULL AND closed_at IS NULL;
-- podState filter in the default order (replaces the single-column index).
DROP INDEX tasks_pod_state;
CREATE INDEX tasks_pod_state_updated ON tasks (pod_state, updated_at, id);

-- +goose Down
DROP INDEX tasks_pod_state_updated;
CREATE INDEX tasks_pod_state ON tasks (pod_state);
DROP INDEX tasks_open_deadline;
DROP INDEX tasks_deadline;
DROP INDEX tasks_parent_created;
DROP INDEX tasks_parent_updated;
DROP TABLE task_labels;
ALTER TABLE tasks DROP COLUMN deadline;
ALTER TABLE tasks DROP COLUMN parent_id;
ALTER TABLE tasks DROP COLUMN labels;
