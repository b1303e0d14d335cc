package feed

import (
	"context"
	"math"
	"sort"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxPendingChanges bounds the tasks a slow taskChanged subscriber may owe;
// past it the subscription ends with an error rather than grow without limit.
const maxPendingChanges = 10_000

// TaskChanged streams the new view of every task whose row changes and that
// passes the filter. A slow subscriber gets each changed task's latest view —
// intermediate views of one task are coalesced — and never slows writers.
// The channel closes when ctx ends, or when the subscriber owes more than
// maxPendingChanges tasks.
func (f *Feed) TaskChanged(ctx context.Context, filter ipa.TaskFilter) (<-chan *ipa.Task, error) {
	l := f.broker.listenChanges()
	// since is the global position up to which changes are known to have
	// been heard of: the head when the subscription began, read after it
	// listens and before the caller may write, so a change the caller
	// makes next is after it; then the newest commit handled. A resync
	// (the commit notices of other instances may have been lost while the
	// listener was down) reads the tasks changed after it from the store.
	var since int64
	if f.store != nil { // nil only in tests whose commits all carry their task
		var err error
		if since, err = f.store.HeadPosition(ctx); err != nil {
			f.broker.unlistenChanges(l)
			return nil, err
		}
	}
	out := make(chan *ipa.Task)
	go f.runChanges(ctx, l, filter, since, out)
	return out, nil
}

func (f *Feed) runChanges(ctx context.Context, l *changeListener, filter ipa.TaskFilter, since int64, out chan<- *ipa.Task) {
	defer close(out)
	defer f.broker.unlistenChanges(l)
	sent := make(map[string]int64) // task id -> last version sent; never send an older view
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		resync := l.takeResync()
		pending, overflow := l.take()
		if resync && !overflow {
			if overflow = !f.changedSince(ctx, since, pending); ctx.Err() != nil {
				return
			}
		}
		if overflow {
			f.log.Warn("taskChanged subscriber too slow; closing it", "pending", maxPendingChanges)
			return
		}
		commits := make([]Commit, 0, len(pending))
		for _, c := range pending {
			commits = append(commits, c)
		}
		sort.Slice(commits, func(i, j int) bool { return commits[i].Position < commits[j].Position })
		for _, c := range commits {
			if c.Position > since && c.Position < math.MaxInt64 {
				since = c.Position
			}
			t := c.Task
			if t == nil { // a notice from another instance: read the row
				var err error
				if t, err = f.store.GetTask(ctx, c.TaskID); err != nil {
					if ctx.Err() != nil {
						return
					}
					continue
				}
			}
			if v, ok := sent[t.ID]; ok && v >= t.Version {
				continue
			}
			if len(sent) > maxPendingChanges {
				clear(sent)
			}
			sent[t.ID] = t.Version
			if !filter.Matches(t) {
				continue
			}
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
	}
}

// resyncPage is how many events a resync reads at a time.
const resyncPage = 1000

// changedSince adds to pending (as notices, whose rows are read) every task
// with an event after position since; it reports false when that is more
// tasks than a subscriber may owe. A store error ends the resync early (the
// next resync reads again).
func (f *Feed) changedSince(ctx context.Context, since int64, pending map[string]Commit) bool {
	for {
		evs, err := f.store.ReadEvents(ctx, ipa.EventQuery{After: since, Limit: resyncPage})
		if err != nil {
			f.log.Warn("taskChanged resync", "err", err)
			return true
		}
		for _, e := range evs {
			if old, ok := pending[e.TaskID]; !ok || old.Position < e.Position {
				if !ok && len(pending) >= maxPendingChanges {
					return false
				}
				pending[e.TaskID] = Commit{TaskID: e.TaskID, Version: e.Version, Position: e.Position}
			}
			since = e.Position
		}
		if len(evs) < resyncPage {
			return true
		}
	}
}
