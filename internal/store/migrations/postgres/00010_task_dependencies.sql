-- +goose Up
-- What a task depends on, one row per dependency, so the dependents of a
-- task that completes or is cancelled are an index lookup (depends_on first)
-- instead of a text match over every task's depends_on column. The column
-- stays the task row's copy (read with the row); both are written in the
-- transaction that writes the row. A dependency is no foreign key: a
-- deleted one simply holds nothing back.
CREATE TABLE task_dependencies (
    depends_on uuid NOT NULL,
    task_id    uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, task_id)
);
CREATE INDEX task_dependencies_task ON task_dependencies (task_id);

INSERT INTO task_dependencies (depends_on, task_id)
    SELECT DISTINCT d::uuid, t.id FROM tasks t CROSS JOIN LATERAL jsonb_array_elements_text(t.depends_on::jsonb) AS d
    WHERE t.depends_on <> '[]'
    ON CONFLICT DO NOTHING;

-- +goose Down
DROP TABLE task_dependencies;
