package graph

import (
	"github.com/ipa-dev/ipa/graph/model"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// limitModel is a concurrency limit as the API shows it; a removed one has
// a null limit and no updatedAt.
func limitModel(l ipa.ConcurrencyLimit, removed bool) *model.ConcurrencyLimit {
	m := &model.ConcurrencyLimit{Key: l.Key, Running: l.Running, Queued: l.Queued}
	if !removed {
		n := l.Limit
		m.Limit = &n
		at := l.UpdatedAt
		m.UpdatedAt = &at
	}
	return m
}
