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
	mu  sync.Mutex
	fns []func(instanceID string)
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
	if channel != podCommandChannel {
		return false
	}
	s.podCommandQueued(payload)
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

// DeletePodCommand removes a command once carried out (or given up);
// a missing one is not an error.
func (s *Store) DeletePodCommand(ctx context.Context, id string) error {
	if err := s.write.WithContext(ctx).Exec(`DELETE FROM pod_commands WHERE id = ?`, id).Error; err != nil {
		return s.wrap(fmt.Errorf("store: delete pod command: %w", err))
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
