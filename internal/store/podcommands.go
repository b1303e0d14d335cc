package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"
)

// podCommandChannel is the PostgreSQL NOTIFY channel that wakes the instance
// a pod command is for; the payload is that instance's id. It shares the
// LISTEN connection of the commit notices.
const podCommandChannel = "ipa_pod_commands"

// podCommandDoneChannel is the PostgreSQL NOTIFY channel that tells the
// caller waiting for a pod command that it was carried out (deleted); the
// payload is the command's id.
const podCommandDoneChannel = "ipa_pod_commands_done"

// PodCommand is an intent for a pod that another instance owns: the owner
// carries it out and deletes the row.
type PodCommand struct {
	ID         string
	TaskID     string
	InstanceID string // the instance that must act
	Command    string // "stop", "restart", "start_handoff"
	Reason     string
	CreatedAt  time.Time
}

// podCommandWatchers hear that commands wait for an instance.
type podCommandWatchers struct {
	mu   sync.Mutex
	fns  []func(instanceID string)
	done []func(id string)
}

// WatchPodCommands makes fn hear, while ListenCommits runs (PostgreSQL), the
// id of an instance for which a command was committed. A notice may be lost
// while the LISTEN connection is down, so the owner also polls. fn must not
// block.
func (s *Store) WatchPodCommands(fn func(instanceID string)) {
	s.podCommandWatch.mu.Lock()
	s.podCommandWatch.fns = append(s.podCommandWatch.fns, fn)
	s.podCommandWatch.mu.Unlock()
}

// WatchPodCommandsDone makes fn hear, while ListenCommits runs (PostgreSQL)
// and at once on SQLite, the id of every pod command deleted (carried out or
// given up). A notice may be lost while the LISTEN connection is down, so a
// waiter also looks at the row now and then. fn must not block.
func (s *Store) WatchPodCommandsDone(fn func(id string)) {
	s.podCommandWatch.mu.Lock()
	s.podCommandWatch.done = append(s.podCommandWatch.done, fn)
	s.podCommandWatch.mu.Unlock()
}

func (s *Store) podCommandDone(id string) {
	s.podCommandWatch.mu.Lock()
	fns := slices.Clone(s.podCommandWatch.done)
	s.podCommandWatch.mu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
}

func (s *Store) podCommandQueued(instanceID string) {
	s.podCommandWatch.mu.Lock()
	fns := slices.Clone(s.podCommandWatch.fns)
	s.podCommandWatch.mu.Unlock()
	for _, fn := range fns {
		fn(instanceID)
	}
}

// heardPodCommand handles a pod command notice; it reports whether the
// payload was one.
func (s *Store) heardPodCommand(channel, payload string) bool {
	switch channel {
	case podCommandChannel:
		s.podCommandQueued(payload)
	case podCommandDoneChannel:
		s.podCommandDone(payload)
	default:
		return false
	}
	return true
}

// AddPodCommand commits a command for the instance that owns the task's pod
// and notifies it (PostgreSQL delivers the notice at commit). It returns the
// command's id. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) AddPodCommand(ctx context.Context, c PodCommand) (string, error) {
	if !validID(c.TaskID) {
		return "", nil
	}
	c.ID = newID()
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO pod_commands (id, task_id, instance_id, command, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			c.ID, c.TaskID, c.InstanceID, c.Command, c.Reason, nanos(c.CreatedAt)).Error; err != nil {
			return err
		}
		if s.postgres() {
			return tx.Exec(`SELECT pg_notify(?, ?)`, podCommandChannel, c.InstanceID).Error
		}
		return nil
	})
	if err != nil {
		return "", s.wrap(fmt.Errorf("store: add pod command: %w", err))
	}
	if !s.postgres() {
		s.podCommandQueued(c.InstanceID)
	}
	return c.ID, nil
}

// PodCommands returns the commands waiting for instanceID, oldest first.
func (s *Store) PodCommands(ctx context.Context, instanceID string) ([]PodCommand, error) {
	var rows []struct {
		ID, TaskID, InstanceID, Command, Reason string
		CreatedAt                               int64
	}
	err := s.read.WithContext(ctx).Raw(`SELECT id, task_id, instance_id, command, reason, created_at FROM pod_commands
		WHERE instance_id = ? ORDER BY created_at, id LIMIT ?`, instanceID, maxActivePods).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: pod commands: %w", err))
	}
	out := make([]PodCommand, len(rows))
	for i, r := range rows {
		out[i] = PodCommand{ID: r.ID, TaskID: r.TaskID, InstanceID: r.InstanceID, Command: r.Command, Reason: r.Reason, CreatedAt: time.Unix(0, r.CreatedAt)}
	}
	return out, nil
}

// DeletePodCommand removes a command once carried out (or given up) and
// tells whoever waits for it (PostgreSQL delivers the notice at commit); a
// missing one is not an error.
func (s *Store) DeletePodCommand(ctx context.Context, id string) error {
	deleted := false
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM pod_commands WHERE id = ?`, id)
		deleted = res.Error == nil && res.RowsAffected > 0
		if !deleted || !s.postgres() {
			return res.Error
		}
		return tx.Exec(`SELECT pg_notify(?, ?)`, podCommandDoneChannel, id).Error
	})
	if err != nil {
		return s.wrap(fmt.Errorf("store: delete pod command: %w", err))
	}
	if deleted && !s.postgres() {
		s.podCommandDone(id)
	}
	return nil
}

// PodCommandPending reports whether the command is still waiting.
func (s *Store) PodCommandPending(ctx context.Context, id string) (bool, error) {
	var n int64
	if err := s.read.WithContext(ctx).Raw(`SELECT COUNT(*) FROM pod_commands WHERE id = ?`, id).Scan(&n).Error; err != nil {
		return false, s.wrap(fmt.Errorf("store: pod command: %w", err))
	}
	return n > 0, nil
}
