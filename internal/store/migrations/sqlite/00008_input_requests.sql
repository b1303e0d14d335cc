-- +goose Up
-- The inbox: one row per input_requested event, kept in the same
-- transaction as the events that change it.
-- The stream is the truth; this table answers Query.inputRequests across
-- tasks and finds a request's task by its id. expires_at (unix nanoseconds)
-- of pending rows is the durable expiry timer.
CREATE TABLE input_requests (
    id          TEXT    PRIMARY KEY,
    task_id     TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX input_requests_state ON input_requests (state, id);
CREATE INDEX input_requests_expiry ON input_requests (expires_at) WHERE state = 'PENDING' AND expires_at IS NOT NULL;
CREATE INDEX input_requests_task ON input_requests (task_id);

-- +goose Down
DROP TABLE input_requests;
