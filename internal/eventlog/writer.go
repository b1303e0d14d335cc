// Package eventlog is the write side of the event log (its live read side
// is package feed; stored reads go to the store). Every append names the
// task, its expected version, its actor and a decision made against the
// task's current row; what commits is then handed to the live feeds. The
// services, the pod recorder and the runtime host all write through one
// Writer, so "publish after commit" is kept in exactly one place. It sits
// below the services and the supervisor and depends on neither.
package eventlog

import (
	"context"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxAppendRetries bounds how often a write without a client-given expected
// version is retried after losing an optimistic-concurrency race.
const maxAppendRetries = 5

// Store is the part of the store a Writer needs.
type Store interface {
	CreateTask(ctx context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error)
	Append(ctx context.Context, req ipa.AppendRequest) (ipa.AppendResult, error)
}

// Publisher hears about every commit, after it committed. Live feeds hang
// off it; it must not block. *feed.Broker is the in-process one.
type Publisher interface {
	Publish(c feed.Commit)
}

// Writer appends to task streams and publishes what committed. It is safe
// for concurrent use.
type Writer struct {
	store     Store
	publisher Publisher
}

// NewWriter returns a Writer over st. publisher may be nil: nothing is
// published (tools that write without live feeds).
func NewWriter(st Store, publisher Publisher) *Writer {
	return &Writer{store: st, publisher: publisher}
}

// Append is one write to a task's stream.
type Append struct {
	TaskID string
	// Expected is the version the client named; nil retries lost races
	// (decide runs again against the newer row).
	Expected *int64
	Actor    string
	Decide   ipa.DecideFunc
}

// Append runs a.Decide against the task's current row and commits its events,
// retrying lost races when no expected version was named. The correlation id
// comes from ctx. Returns the store's errors unchanged (TASK_NOT_FOUND,
// VERSION_CONFLICT, STORE_UNAVAILABLE …) and Decide's errors.
func (w *Writer) Append(ctx context.Context, a Append) (*ipa.Task, []ipa.Event, error) {
	want := ipa.AnyVersion
	if a.Expected != nil {
		want = *a.Expected
	}
	for attempt := 0; ; attempt++ {
		res, err := w.store.Append(ctx, ipa.AppendRequest{
			TaskID:          a.TaskID,
			ExpectedVersion: want,
			Decide:          a.Decide,
			Actor:           a.Actor,
			CorrelationID:   ipa.CorrelationID(ctx),
		})
		if err != nil && a.Expected == nil && ipa.ErrorReason(err) == ipa.ReasonVersionConflict && attempt < maxAppendRetries {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		w.publish(res.Events, res.Task)
		return res.Task, res.Events, nil
	}
}

// CreateTask creates the task's stream, first event and row in one
// transaction and publishes them (nothing is published when an idempotency
// key returned an existing task). Returns the store's errors unchanged.
func (w *Writer) CreateTask(ctx context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error) {
	res, err := w.store.CreateTask(ctx, req)
	if err == nil && !res.Existing {
		w.publish(res.Events, res.Task)
	}
	return res, err
}

func (w *Writer) publish(events []ipa.Event, t *ipa.Task) {
	if w.publisher != nil && len(events) > 0 {
		last := events[len(events)-1]
		w.publisher.Publish(feed.Commit{TaskID: t.ID, Version: last.Version, Position: last.Position, Events: events, Task: t})
	}
}
