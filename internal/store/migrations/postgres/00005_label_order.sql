-- +goose Up
-- A label selector page read in the list's order. Each task_labels row
-- carries copies of its task's ordering columns and list filters (archived,
-- status, created_at, updated_at, title), written by the same transaction
-- that writes the task row, so a page of tasks with a label is a range scan
-- of one of these indexes in the page's order, stopping after the page,
-- instead of reading every task with the label and sorting them.
ALTER TABLE task_labels ADD COLUMN archived   boolean NOT NULL DEFAULT false;
ALTER TABLE task_labels ADD COLUMN status     text    NOT NULL DEFAULT '';
ALTER TABLE task_labels ADD COLUMN created_at bigint  NOT NULL DEFAULT 0;
ALTER TABLE task_labels ADD COLUMN updated_at bigint  NOT NULL DEFAULT 0;
ALTER TABLE task_labels ADD COLUMN title      text    NOT NULL DEFAULT '';
UPDATE task_labels l SET archived = t.archived, status = t.status, created_at = t.created_at,
    updated_at = t.updated_at, title = t.title
    FROM tasks t WHERE t.id = l.task_id;

CREATE INDEX task_labels_updated ON task_labels (key, value, archived, updated_at, task_id);
CREATE INDEX task_labels_created ON task_labels (key, value, archived, created_at, task_id);
CREATE INDEX task_labels_title ON task_labels (key, value, archived, title, task_id);
CREATE INDEX task_labels_status_updated ON task_labels (key, value, archived, status, updated_at, task_id);
-- Every index above starts with (key, value): the old one is redundant.
DROP INDEX task_labels_key_value;

-- +goose Down
CREATE INDEX task_labels_key_value ON task_labels (key, value, task_id);
DROP INDEX task_labels_status_updated;
DROP INDEX task_labels_title;
DROP INDEX task_labels_created;
DROP INDEX task_labels_updated;
ALTER TABLE task_labels DROP COLUMN title;
ALTER TABLE task_labels DROP COLUMN updated_at;
ALTER TABLE task_labels DROP COLUMN created_at;
ALTER TABLE task_labels DROP COLUMN status;
ALTER TABLE task_labels DROP COLUMN archived;
