// Package manager is the Central Task Manager: the use cases of the product
// (create, list, start and stop pods, move phases, complete, cancel), with
// their validation, authorization and policy. It speaks the domain vocabulary
// of package ipa, persists through package store, and drives pods through a
// PodController. The GraphQL layer calls it and nothing else.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/cursor"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Runtime describes a pod runtime the server can start.
type Runtime struct {
	Name        string
	Description string
	// ValidateConfig checks a task's runtime config when the task is created,
	// without starting anything. Nil accepts any JSON object.
	ValidateConfig func(raw []byte) error
}

// Publisher hears about every commit, after it committed. Live feeds hang
// off it; it must not block. *feed.Broker is the in-process one.
type Publisher interface {
	Publish(c feed.Commit)
}

// Config wires a Manager.
type Config struct {
	Store         *store.Store
	Runtimes      []Runtime
	DefaultPolicy ipa.RestartPolicy
	Publisher     Publisher  // may be nil: no live feeds
	Feed          *feed.Feed // may be nil: subscriptions answer UNAVAILABLE
	Metrics       *Metrics   // may be nil
	Logger        *slog.Logger
	Now           func() time.Time
}

// Manager runs the task use cases. It is safe for concurrent use.
type Manager struct {
	store     *store.Store
	runtimes  map[string]Runtime
	names     []string
	policy    ipa.RestartPolicy
	publisher Publisher
	feed      *feed.Feed
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	cursors   *cursor.Codec

	mu   sync.RWMutex
	pods PodController // nil until pods are wired: pod mutations answer UNAVAILABLE
}

// cursorSecretName is the settings row holding the cursor signing key; it is
// shared by every instance on one database so cursors survive restarts and
// work across instances.
const cursorSecretName = "cursor-hmac-key"

// New returns a Manager. Returns an error when the store cannot provide the
// cursor signing key.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("manager: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DefaultPolicy == (ipa.RestartPolicy{}) {
		cfg.DefaultPolicy = ipa.DefaultRestartPolicy()
	}
	if err := cfg.DefaultPolicy.Validate(); err != nil {
		return nil, fmt.Errorf("manager: default restart policy: %w", err)
	}
	key, err := cfg.Store.Secret(ctx, cursorSecretName, 32)
	if err != nil {
		return nil, fmt.Errorf("manager: cursor key: %w", err)
	}
	m := &Manager{
		store:     cfg.Store,
		runtimes:  make(map[string]Runtime, len(cfg.Runtimes)),
		policy:    cfg.DefaultPolicy,
		publisher: cfg.Publisher,
		feed:      cfg.Feed,
		metrics:   cfg.Metrics,
		log:       cfg.Logger,
		now:       func() time.Time { return cfg.Now().UTC() },
		cursors:   cursor.New(key),
	}
	for _, rt := range cfg.Runtimes {
		m.runtimes[rt.Name] = rt
		m.names = append(m.names, rt.Name)
	}
	sort.Strings(m.names)
	return m, nil
}

// SetPods connects the pod controller. Until it is set, startPod, stopPod and
// restartPod answer UNAVAILABLE after their usual checks.
func (m *Manager) SetPods(p PodController) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods = p
}

func (m *Manager) podController() PodController {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pods
}

// Runtimes lists the runtimes the server can start, by name. Requires VIEWER.
func (m *Manager) Runtimes(ctx context.Context) ([]ipa.RuntimeInfo, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	out := make([]ipa.RuntimeInfo, 0, len(m.names))
	for _, n := range m.names {
		rt := m.runtimes[n]
		info := ipa.RuntimeInfo{Name: rt.Name}
		if rt.Description != "" {
			d := rt.Description
			info.Description = &d
		}
		out = append(out, info)
	}
	return out, nil
}

// Viewer returns the authenticated actor. Returns EUNAUTHENTICATED when none.
func (m *Manager) Viewer(ctx context.Context) (ipa.Actor, error) {
	return ipa.RequireRole(ctx, ipa.RoleViewer)
}

// Ready reports whether the store answers.
func (m *Manager) Ready(ctx context.Context) error { return m.store.Ping(ctx) }

// publish hands committed events to the live feeds.
func (m *Manager) publish(events []ipa.Event, t *ipa.Task) {
	if m.publisher != nil && len(events) > 0 {
		last := events[len(events)-1]
		m.publisher.Publish(feed.Commit{TaskID: t.ID, Version: last.Version, Position: last.Position, Events: events, Task: t})
	}
}
