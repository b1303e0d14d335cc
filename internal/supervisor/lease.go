package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Lease records that this server owns a task's pod and how to find it again
// after a restart: enough to prove the process is the one we started (pid,
// start ticks, boot id) and to reconnect to it (network, address, protocol).
type Lease struct {
	TaskID          string    `json:"taskId"`
	Runtime         string    `json:"runtime"`
	Attempt         int       `json:"attempt"`
	PID             int       `json:"pid"`
	StartTicks      uint64    `json:"startTicks"` // /proc/<pid>/stat field 22
	BootID          string    `json:"bootId"`
	Network         string    `json:"network"` // "unix" or "tcp"
	Addr            string    `json:"addr"`
	Protocol        string    `json:"protocol"` // go-plugin protocol, "grpc"
	ProtocolVersion int       `json:"protocolVersion"`
	StartedAt       time.Time `json:"startedAt"`
}

// LeaseStore persists the leases of the pods this server owns. Save replaces
// the lease of the same task. Delete of a missing lease is not an error. A
// store-backed implementation belongs in internal/store (a pod_leases table
// with an owner column is how several instances share one database).
type LeaseStore interface {
	Save(ctx context.Context, l Lease) error
	Delete(ctx context.Context, taskID string) error
	List(ctx context.Context) ([]Lease, error)
}

// MemoryLeaseStore is a LeaseStore in memory, for tests: it survives a
// Supervisor (two supervisors can share it) but not the process.
type MemoryLeaseStore struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// NewMemoryLeaseStore returns an empty MemoryLeaseStore.
func NewMemoryLeaseStore() *MemoryLeaseStore {
	return &MemoryLeaseStore{leases: map[string]Lease{}}
}

func (m *MemoryLeaseStore) Save(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases[l.TaskID] = l
	return nil
}

func (m *MemoryLeaseStore) Delete(_ context.Context, taskID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, taskID)
	return nil
}

func (m *MemoryLeaseStore) List(context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out, nil
}

// FileLeaseStore keeps one JSON file per lease in a directory (a stopgap until
// the store has a table). Each write goes to a temporary file that is renamed
// into place, so a crash never leaves a half-written lease.
type FileLeaseStore struct {
	dir string
}

// NewFileLeaseStore returns a FileLeaseStore in dir, creating it (0700).
func NewFileLeaseStore(dir string) (*FileLeaseStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lease dir: %w", err)
	}
	return &FileLeaseStore{dir: dir}, nil
}

func (s *FileLeaseStore) path(taskID string) (string, error) {
	if taskID == "" || strings.ContainsAny(taskID, `/\`) || taskID == "." || taskID == ".." {
		return "", fmt.Errorf("lease: bad task id %q", taskID)
	}
	return filepath.Join(s.dir, taskID+".json"), nil
}

func (s *FileLeaseStore) Save(_ context.Context, l Lease) error {
	p, err := s.path(l.TaskID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".lease-*")
	if err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save lease: %w", err)
	}
	return nil
}

func (s *FileLeaseStore) Delete(_ context.Context, taskID string) error {
	p, err := s.path(taskID)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete lease: %w", err)
	}
	return nil
}

// List returns every readable lease; an unreadable file is skipped (and will
// be overwritten or deleted with its task), never fatal to a restart.
func (s *FileLeaseStore) List(context.Context) ([]Lease, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	var out []Lease
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			continue
		}
		var l Lease
		if json.Unmarshal(b, &l) != nil || l.TaskID == "" {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}
