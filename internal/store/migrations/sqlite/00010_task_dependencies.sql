-- +goose Up
-- What a task depends on, one row per dependency, so the dependents of a
-- task that completes or is cancelled are an index lookup (depends_on first)
-- instead of a text match over every task's depends_on column. The column
-- stays the task row's copy (read with the row); both are written in the
-- transaction that writes the row. A dependency is no foreign key: a
-- deleted one simply holds nothing back.
CREATE TABLE task_dependencies (
    depends_on TEXT NOT NULL,
    task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, task_id)
);
CREATE INDEX task_dependencies_task ON task_dependencies (task_id);

INSERT OR IGNORE INTO task_dependencies (depends_on, task_id)
    SELECT j.value, t.id FROM tasks t, json_each(t.depends_on) j
    WHERE t.depends_on <> '[]' AND json_valid(t.depends_on);

-- +goose Down
DROP TABLE task_dependencies;
