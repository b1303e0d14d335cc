package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/glebarez/go-sqlite" // database/sql driver "sqlite", for the copy a restore reads
)

// Backups of a SQLite store.
//
// A backup is SQLite's VACUUM INTO run inside one read transaction: a
// consistent snapshot as of its start, taken while the server keeps
// writing (WAL readers do not block the writer), written as an ordinary
// single-file database that opens as a store of its own.
//
// A store in use is marked by a shared flock on "<file>.lock", held by every
// process that has the store open (ipa serve above all). A restore takes the
// exclusive lock without waiting, so it is refused while any of them runs,
// and a server cannot start while a restore runs. The kernel drops the lock
// when a process dies, even by SIGKILL, so nothing stale is left to clean.

// errFileLocked is lockFile's answer when the other kind of lock is held.
var errFileLocked = errors.New("store: file is locked")

// ErrInUse is returned by Restore when a running server or command holds
// the store.
var ErrInUse = errors.New("the database is in use by a running ipa server or command: stop it before restoring")

// sqlitePath returns the file named by a sqlite:// URL.
func sqlitePath(rawURL string) (string, error) {
	path := strings.TrimPrefix(rawURL, "sqlite://")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return "", fmt.Errorf("store: sqlite URL names no file")
	}
	return path, nil
}

func lockPath(dbPath string) string { return dbPath + ".lock" }

// errPostgresBackup answers a backup asked of a PostgreSQL store.
var errPostgresBackup = errors.New("ipa backup copies SQLite stores; back up PostgreSQL with pg_dump -Fc (see docs/guides/operations.md, Backups)")

// CheckBackupSource says, before anything is opened, why the store named by
// rawURL cannot be backed up by Backup: it is on PostgreSQL (pg_dump's job),
// or its file does not exist (opening it would create an empty store).
func CheckBackupSource(rawURL string) error {
	if !strings.HasPrefix(rawURL, "sqlite://") {
		return errPostgresBackup
	}
	path, err := sqlitePath(rawURL)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no store to back up at %s", path)
	}
	return nil
}

// Backup writes a consistent copy of the SQLite store to the file to, which
// must not exist yet; the store may be in use by a running server
// meanwhile. The copy is written beside to under a temporary name, checked
// and synced, then linked into place, so a failed or interrupted backup
// never leaves a file at to. Returns an error for a PostgreSQL store (use
// pg_dump) or when to exists.
func (s *Store) Backup(ctx context.Context, to string) error {
	if s.postgres() {
		return errPostgresBackup
	}
	to, err := filepath.Abs(to)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("%s already exists: choose a new file for the backup", to)
	}
	tmp, err := privateTempFile(to, ".partial")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp)
	if err := s.read.WithContext(ctx).Exec("VACUUM INTO ?", tmp).Error; err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkSQLiteStore(ctx, tmp); err != nil {
		return fmt.Errorf("backup: the copy does not check out: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	// Link, unlike rename, refuses to replace a file created meanwhile.
	if err := os.Link(tmp, to); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return syncDir(filepath.Dir(to))
}

// Restore replaces the SQLite store named by rawURL with a copy of the
// backup file from, refusing (ErrInUse) while any process has the store
// open. The backup is read through SQLite (VACUUM INTO), so it is checked to
// be an ipa store no newer than this binary, and what lands is one clean
// file. The store it replaces is not deleted: its files are renamed to
// "<file>.replaced-<UTC time>" (returned as kept; "" when there was none).
func Restore(ctx context.Context, rawURL, from string) (kept string, err error) {
	if !strings.HasPrefix(rawURL, "sqlite://") {
		return "", errors.New("ipa restore writes SQLite stores; restore PostgreSQL with pg_restore (see docs/guides/operations.md, Backups)")
	}
	path, err := sqlitePath(rawURL)
	if err != nil {
		return "", err
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", err
	}
	if from, err = filepath.Abs(from); err != nil {
		return "", err
	}
	if from == path {
		return "", errors.New("the backup is the database itself")
	}
	if _, err := os.Stat(from); err != nil {
		return "", fmt.Errorf("backup file: %w", err)
	}
	if err := checkSQLiteStore(ctx, from); err != nil {
		return "", fmt.Errorf("%s is not a usable ipa backup: %w", from, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	lock, err := lockFile(lockPath(path), true)
	if errors.Is(err, errFileLocked) {
		return "", ErrInUse
	}
	if err != nil {
		return "", err
	}
	defer lock.Close()

	tmp, err := privateTempFile(path, ".restoring")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := vacuumInto(ctx, from, tmp); err != nil {
		return "", fmt.Errorf("restore: read the backup: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return "", err
	}
	// Keep the replaced store with its WAL (which may hold its last
	// commits); its shared-memory index is rebuilt from the WAL on open.
	if _, err := os.Lstat(path); err == nil {
		kept = path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, kept); err != nil {
			return "", err
		}
		if err := os.Rename(path+"-wal", kept+"-wal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	// A WAL left beside the new file would be replayed into it.
	for _, stale := range []string{path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return kept, syncDir(filepath.Dir(path))
}

// openFile opens a SQLite file through database/sql with pragmas.
func openFile(path string, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	if readOnly {
		q.Set("mode", "ro")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// vacuumInto writes a compact copy of the SQLite file from to the new file to.
func vacuumInto(ctx context.Context, from, to string) error {
	db, err := openFile(from, true)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", to)
	return err
}

// checkSQLiteStore checks that the file at path is an intact SQLite
// database holding an ipa store whose schema this binary knows.
func checkSQLiteStore(ctx context.Context, path string) error {
	db, err := openFile(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&result); err != nil {
		return fmt.Errorf("not a SQLite database: %w", err)
	}
	if result != "ok" {
		return fmt.Errorf("damaged: %s", result)
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
		AND name IN ('goose_db_version', 'streams', 'events', 'tasks')`).Scan(&tables); err != nil {
		return err
	}
	if tables != 4 {
		return errors.New("not an ipa store (its tables are missing)")
	}
	var version int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		return err
	}
	if known := latestMigration(); version > known {
		return fmt.Errorf("made by a newer ipa (schema version %d; this binary knows up to %d)", version, known)
	}
	return nil
}

// latestMigration is the version of the newest SQLite migration embedded.
func latestMigration() int64 {
	entries, _ := fs.ReadDir(migrations, "migrations/"+dialectSQLite)
	var latest int64
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// privateTempFile creates an empty file of mode 0600 beside path, for a
// copy of the store to be written into, and returns its name. A store holds
// secrets (webhook secrets, sealed; token hashes; whatever tasks carry), so
// its copies are for the owner alone whatever the umask says. The file
// exists, with its final mode, before a byte is written: VACUUM INTO
// accepts an empty file and keeps its mode, so there is no moment at which
// the copy is readable by others (SQLite's own default would be 0644).
func privateTempFile(path, suffix string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+suffix+"-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	// CreateTemp asks for 0600, which the umask can only narrow (and a
	// file the owner cannot write is no use): set it exactly.
	err = f.Chmod(privateFileMode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return "", err
	}
	return name, nil
}

// createPrivate creates an empty file of mode 0600 at path unless a file
// is there already (which it leaves as it is).
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, privateFileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Chmod(privateFileMode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// privateFileMode is the mode of every SQLite file ipa creates: the store,
// its backups and restored copies.
const privateFileMode = 0o600

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_ = d.Sync() // not every file system syncs directories
	return nil
}
