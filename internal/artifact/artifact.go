// Package artifact keeps the files a task's pods leave behind: saved under
// <dataDir>/artifacts/<taskID>/<name>, each recorded by an artifact_saved
// event { name, sizeBytes, sha256 }, listed as Task.artifacts and served at
// /artifacts/{taskId}/{name}.
//
// Two ways in: an exec command writes files into $IPA_ARTIFACTS (a
// directory in its workspace) and they are collected when it ends
// (Collect); a runtime saves one through the host service
// (runtimehost.Host.SaveArtifact, the entry point of the runtime SDK).
//
// Names are one plain file name: 1 to MaxNameLen characters of
// [A-Za-z0-9._-], not starting with '.', so no name can leave its task's
// directory. A file over the per-artifact limit, or that would take the
// task over its total, is refused (artifact_refused) and not kept.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Event types.
const (
	EventSaved   = "artifact_saved"
	EventRefused = "artifact_refused"
)

// Dir names the directory, under the data directory, that holds them.
const Dir = "artifacts"

// StagingDir is the directory in a task's workspace whose files an exec
// command leaves as artifacts ($IPA_ARTIFACTS).
const StagingDir = ".ipa-artifacts"

// Limits.
const (
	MaxNameLen           = 200
	DefaultMaxBytes      = 100 << 20 // per artifact
	DefaultMaxTaskBytes  = 1 << 30   // per task, all its artifacts
	MaxArtifactsPerTask  = 1000
	maxRefusedNameReport = 64
)

// SavedData is the data of artifact_saved.
type SavedData struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
}

// RefusedData is the data of artifact_refused.
type RefusedData struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Artifact is one saved artifact of a task.
type Artifact struct {
	TaskID    string
	Name      string
	SizeBytes int64
	SHA256    string
	SavedAt   time.Time
}

// ValidName reports whether name may name an artifact.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Recorder appends an artifact event to a task's stream.
type Recorder func(ctx context.Context, taskID, actor, typ string, data any) error

// Reader reads a task's events.
type Reader interface {
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
}

// Store keeps the artifacts under one data directory.
type Store struct {
	root     string
	maxBytes int64
	maxTask  int64
	record   Recorder
	read     Reader
}

// Config builds a Store.
type Config struct {
	DataDir      string
	MaxBytes     int64 // per artifact; 0: DefaultMaxBytes
	MaxTaskBytes int64 // per task; 0: DefaultMaxTaskBytes
	Record       Recorder
	Read         Reader
}

// New returns the Store of cfg.DataDir.
func New(cfg Config) *Store {
	s := &Store{root: filepath.Join(cfg.DataDir, Dir), maxBytes: cfg.MaxBytes, maxTask: cfg.MaxTaskBytes, record: cfg.Record, read: cfg.Read}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytes
	}
	if s.maxTask <= 0 {
		s.maxTask = DefaultMaxTaskBytes
	}
	return s
}

func (s *Store) taskDir(taskID string) (string, error) {
	if taskID == "" || taskID == "." || taskID == ".." || filepath.Base(taskID) != taskID {
		return "", ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Not a task id.")
	}
	return filepath.Join(s.root, taskID), nil
}

// ErrRefused wraps why an artifact was not kept.
var ErrRefused = errors.New("artifact refused")

// Save keeps src as taskID's artifact name (replacing one of that name)
// and records artifact_saved by actor. A name that is not valid, a file
// over the per-artifact limit or one that would take the task over its
// total is refused: artifact_refused is recorded and the error wraps
// ErrRefused.
func (s *Store) Save(ctx context.Context, taskID, actor, name string, src io.Reader) (Artifact, error) {
	refuse := func(reason string) (Artifact, error) {
		n := name
		if len(n) > maxRefusedNameReport || !ValidName(n) {
			n = ""
		}
		_ = s.record(ctx, taskID, actor, EventRefused, RefusedData{Name: n, Reason: reason})
		return Artifact{}, fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	if !ValidName(name) {
		return refuse("invalid name")
	}
	dir, err := s.taskDir(taskID)
	if err != nil {
		return Artifact{}, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Artifact{}, err
	}
	used, count, err := s.used(dir, name)
	if err != nil {
		return Artifact{}, err
	}
	if count >= MaxArtifactsPerTask {
		return refuse(fmt.Sprintf("the task has %d artifacts, the limit", MaxArtifactsPerTask))
	}
	budget := min(s.maxBytes, s.maxTask-used)
	tmp, err := os.CreateTemp(dir, ".saving-")
	if err != nil {
		return Artifact{}, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(src, budget+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, err
	}
	if n > budget {
		if n > s.maxBytes {
			return refuse(fmt.Sprintf("over the %d-byte limit per artifact", s.maxBytes))
		}
		return refuse(fmt.Sprintf("over the task's %d-byte limit for all its artifacts", s.maxTask))
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return Artifact{}, err
	}
	a := Artifact{TaskID: taskID, Name: name, SizeBytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), SavedAt: time.Now().UTC()}
	if err := s.record(ctx, taskID, actor, EventSaved, SavedData{Name: name, SizeBytes: n, SHA256: a.SHA256}); err != nil {
		return Artifact{}, err
	}
	return a, nil
}

// used adds up the sizes of dir's artifacts but the one named except, and
// counts them.
func (s *Store) used(dir, except string) (int64, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	count := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !ValidName(e.Name()) || e.Name() == except {
			continue
		}
		if info, err := e.Info(); err == nil {
			total += info.Size()
			count++
		}
	}
	return total, count, nil
}

// Collect saves every regular file at the top of staging as an artifact
// of taskID (by actor) and removes it from staging. Symbolic links,
// directories and other files are refused and removed: the command wrote
// them, and following a link would let it point the server at any file.
// Files are opened through an os.Root of staging, so nothing outside it is
// read. It returns how many it saved.
func (s *Store) Collect(ctx context.Context, taskID, actor, staging string) (int, error) {
	st, err := os.Lstat(staging)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !st.IsDir() {
		_, _ = s.refuseEntry(ctx, taskID, actor, filepath.Base(staging), "not a directory")
		return 0, os.Remove(staging)
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	entries, err := os.ReadDir(staging)
	if err != nil {
		return 0, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	saved := 0
	for _, e := range entries {
		if ctx.Err() != nil {
			return saved, ctx.Err()
		}
		name := e.Name()
		if !e.Type().IsRegular() {
			_, _ = s.refuseEntry(ctx, taskID, actor, name, "not a regular file")
			_ = root.RemoveAll(name)
			continue
		}
		f, err := root.OpenFile(name, os.O_RDONLY|noFollow, 0)
		if err != nil {
			continue
		}
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			_ = f.Close()
			continue
		}
		_, err = s.Save(ctx, taskID, actor, name, f)
		_ = f.Close()
		_ = root.Remove(name)
		if err == nil {
			saved++
		}
	}
	return saved, nil
}

func (s *Store) refuseEntry(ctx context.Context, taskID, actor, name, reason string) (Artifact, error) {
	if len(name) > maxRefusedNameReport || !ValidName(name) {
		name = ""
	}
	return Artifact{}, s.record(ctx, taskID, actor, EventRefused, RefusedData{Name: name, Reason: reason})
}

// List returns taskID's artifacts from its artifact_saved events, by name;
// a name saved again shows its newest save.
func (s *Store) List(ctx context.Context, taskID string) ([]Artifact, error) {
	evs, err := s.read.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{EventSaved}, Limit: 10 * MaxArtifactsPerTask, Newest: true})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Artifact
	for _, e := range evs {
		var d SavedData
		if json.Unmarshal(e.Data, &d) != nil || !ValidName(d.Name) || seen[d.Name] {
			continue
		}
		seen[d.Name] = true
		out = append(out, Artifact{TaskID: taskID, Name: d.Name, SizeBytes: d.SizeBytes, SHA256: d.SHA256, SavedAt: e.OccurredAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns taskID's artifact name as recorded, and its file opened;
// ENOTFOUND when there is none.
func (s *Store) Get(ctx context.Context, taskID, name string) (Artifact, *os.File, error) {
	notFound := ipa.Errorf(ipa.ENOTFOUND, "", "The task has no artifact of that name.")
	if !ValidName(name) {
		return Artifact{}, nil, notFound
	}
	list, err := s.List(ctx, taskID)
	if err != nil {
		return Artifact{}, nil, err
	}
	for _, a := range list {
		if a.Name != name {
			continue
		}
		dir, err := s.taskDir(taskID)
		if err != nil {
			return Artifact{}, nil, notFound
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return Artifact{}, nil, notFound
		}
		defer root.Close()
		f, err := root.OpenFile(name, os.O_RDONLY|noFollow, 0)
		if err != nil {
			return Artifact{}, nil, notFound
		}
		return a, f, nil
	}
	return Artifact{}, nil, notFound
}

// Remove deletes taskID's artifacts (with the task).
func (s *Store) Remove(taskID string) error {
	dir, err := s.taskDir(taskID)
	if err != nil {
		return nil
	}
	return os.RemoveAll(dir)
}

// Sweep removes the artifacts of tasks that no longer exist; see
// workspace.Dirs.Sweep.
func (s *Store) Sweep(ctx context.Context, exists func(ctx context.Context, taskID string) (bool, error)) (int, error) {
	entries, err := os.ReadDir(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ok, err := exists(ctx, e.Name())
		if err != nil || ok {
			continue
		}
		if os.RemoveAll(filepath.Join(s.root, e.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}
