// Package store keeps task streams, events and the tasks projection in SQLite
// or PostgreSQL. It is the only package that knows GORM or SQL.
//
// Every event has a global position, dense and increasing in commit order
// (see allocatePositions). Writes that append events (CreateTask, Append) go
// through one writer loop per Store that commits whatever is queued in a
// single transaction, each write in its own savepoint (group commit, see
// batch.go); each caller still gets its own outcome, after COMMIT.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names returned by (*Store).Dialect.
const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

//go:embed migrations
var migrations embed.FS

// Options tune Open. The zero value is fine.
type Options struct {
	Logger       *slog.Logger // nil discards
	MaxOpenConns int          // PostgreSQL pool size, or SQLite reader pool size; 0 picks a default
	SkipMigrate  bool         // do not apply migrations on Open
	// Instance names this process in commit notices (PostgreSQL), so it can
	// ignore its own; "" picks a random one.
	Instance string
}

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	dialect  string
	log      *slog.Logger
	url      string // PostgreSQL: for the LISTEN connection
	instance string // names this process in commit notices
	// write runs every write transaction. On SQLite it is a pool of one
	// connection, so writers queue in Go instead of failing with SQLITE_BUSY;
	// on PostgreSQL it is the same pool as read.
	write *gorm.DB
	// read serves queries outside transactions; on SQLite several WAL readers
	// run concurrently with the writer.
	read *gorm.DB
	// w is the writer loop that batches CreateTask and Append into shared
	// transactions (see batch.go); started by Open, stopped by Close.
	w *writer
	// tokenWatch hears token changes (see WatchTokens).
	tokenWatch tokenWatchers
	// podCommandWatch hears pod commands for an instance (see WatchPodCommands).
	podCommandWatch podCommandWatchers
	// writeDSN opens a SQLite connection whose transactions take the
	// write lock at BEGIN (the writer's, and migrations'); "" on PostgreSQL.
	writeDSN string
	// inUse holds a shared lock on the SQLite file's lock file while the
	// Store is open (see lockFile); nil on PostgreSQL.
	inUse *os.File

	// Test hooks; nil in production.
	afterAllocate  func(ctx context.Context) // called between position allocation and commit
	naivePositions bool                      // allocate like a sequence (outside the tx) to prove the test can fail
	onBatch        func(size int)            // called by the writer loop before it runs a batch of size requests
}

// Open connects to the database named by rawURL — sqlite://./ipa.db,
// sqlite:///abs/path.db, postgres://… or postgresql://… — and applies pending
// migrations unless opts.SkipMigrate. Returns an EUNAVAILABLE *ipa.Error
// (wrapped) when the database cannot be reached, and a plain error for a bad
// URL or a failed migration.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, instance: opts.Instance}
	if s.instance == "" {
		s.instance = newID()
	}
	var err error
	switch {
	case strings.HasPrefix(rawURL, "sqlite://"):
		err = s.openSQLite(rawURL, opts)
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		err = s.openPostgres(rawURL, opts)
	default:
		return nil, fmt.Errorf("store: unsupported database URL scheme (want sqlite:// or postgres://)")
	}
	if err != nil {
		return nil, err
	}
	s.startWriter()
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if !opts.SkipMigrate {
		if _, err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func gormConfig() *gorm.Config {
	return &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		PrepareStmt:            false,
	}
}

func (s *Store) openSQLite(rawURL string, opts Options) error {
	path, err := sqlitePath(rawURL)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("store: create database directory: %w", err)
		}
	}
	// A new store is created private before SQLite opens it: SQLite would
	// make it 0644 (less the umask), and its -wal and -shm files copy the
	// main file's mode.
	if err := createPrivate(path); err != nil {
		return fmt.Errorf("store: create database file: %w", err)
	}
	// Mark the file in use for as long as this Store is open, so that
	// `ipa restore` never replaces it under a running server (see backup.go).
	if s.inUse, err = lockFile(lockPath(path), false); err != nil {
		if errors.Is(err, errFileLocked) {
			return fmt.Errorf("store: %s is being restored; start again when the restore has ended", path)
		}
		return err
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	// The readers' transactions are deferred: a read transaction (several
	// reads from one snapshot) takes no lock a writer waits for. With
	// IMMEDIATE it would hold the database's write lock from BEGIN to its
	// end, and every write of the server, queued behind the one writer
	// connection, would wait for it (up to busy_timeout) or fail.
	readDSN := "file:" + path + "?" + q.Encode()
	// The writer's are IMMEDIATE: the write lock is taken at BEGIN, so
	// another process writing the same file makes us wait (busy_timeout)
	// instead of failing mid-transaction.
	q.Set("_txlock", "immediate")
	s.writeDSN = "file:" + path + "?" + q.Encode()

	s.dialect = dialectSQLite
	if s.write, err = gorm.Open(sqlite.Open(s.writeDSN), gormConfig()); err != nil {
		s.Close()
		return s.wrap(err)
	}
	if s.read, err = gorm.Open(sqlite.Open(readDSN), gormConfig()); err != nil {
		s.Close()
		return s.wrap(err)
	}
	wdb, _ := s.write.DB()
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	n := opts.MaxOpenConns
	if n <= 0 {
		n = max(4, runtime.NumCPU())
	}
	rdb, _ := s.read.DB()
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	return nil
}

func (s *Store) openPostgres(rawURL string, opts Options) error {
	s.dialect = dialectPostgres
	s.url = rawURL
	db, err := gorm.Open(postgres.Open(rawURL), gormConfig())
	if err != nil {
		return s.wrap(err)
	}
	n := opts.MaxOpenConns
	if n <= 0 {
		n = 20
	}
	sdb, _ := db.DB()
	sdb.SetMaxOpenConns(n)
	sdb.SetMaxIdleConns(n)
	s.write, s.read = db, db
	return nil
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

func (s *Store) postgres() bool { return s.dialect == dialectPostgres }

// Ping checks that the database answers. Returns an EUNAVAILABLE *ipa.Error
// (wrapped) when it does not.
func (s *Store) Ping(ctx context.Context) error {
	for _, g := range s.handles() {
		db, err := g.DB()
		if err != nil {
			return s.wrap(err)
		}
		if err := db.PingContext(ctx); err != nil {
			return s.wrap(err)
		}
	}
	return nil
}

// handles returns the distinct GORM handles (one on PostgreSQL, two on SQLite).
func (s *Store) handles() []*gorm.DB {
	var out []*gorm.DB
	if s.write != nil {
		out = append(out, s.write)
	}
	if s.read != nil && s.read != s.write {
		out = append(out, s.read)
	}
	return out
}

// Close lets the writes in flight commit and deliver their results, fails
// the writes still queued, then closes every connection. Later calls fail
// with EUNAVAILABLE.
func (s *Store) Close() error {
	s.stopWriter()
	var errs []error
	for _, g := range s.handles() {
		if db, err := g.DB(); err == nil {
			errs = append(errs, db.Close())
		}
	}
	if s.inUse != nil {
		errs = append(errs, s.inUse.Close())
		s.inUse = nil
	}
	return errors.Join(errs...)
}

// Migrate applies pending schema migrations and returns how many it applied;
// running it again applies nothing. On PostgreSQL a session advisory lock
// keeps concurrent instances from migrating at once. Returns a plain error
// when a migration fails, EUNAVAILABLE when the database is unreachable.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	dir, err := fs.Sub(migrations, "migrations/"+s.dialect)
	if err != nil {
		return 0, err
	}
	gooseDialect := goose.DialectSQLite3
	// On SQLite the single-connection writer pool could deadlock with goose's
	// own connection use, and the readers' transactions are deferred (a
	// migration would fail, not wait, when it meets another writer): the
	// migrations get a pool of their own, closed when they are done.
	handle := s.read
	if s.writeDSN != "" {
		mig, err := gorm.Open(sqlite.Open(s.writeDSN), gormConfig())
		if err != nil {
			return 0, s.wrap(err)
		}
		if db, err := mig.DB(); err == nil {
			defer db.Close()
		}
		handle = mig
	}
	popts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.postgres() {
		gooseDialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return 0, err
		}
		popts = append(popts, goose.WithSessionLocker(locker))
	}
	db, err := handle.DB()
	if err != nil {
		return 0, s.wrap(err)
	}
	p, err := goose.NewProvider(gooseDialect, db, dir, popts...)
	if err != nil {
		return 0, fmt.Errorf("store: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return 0, s.wrap(fmt.Errorf("store: migrate: %w", err))
	}
	for _, r := range results {
		s.log.Info("applied migration", "version", r.Source.Version, "path", r.Source.Path, "took", r.Duration)
	}
	return len(results), nil
}

// rawDB returns the writer's *sql.DB for tests and benchmarks.
func (s *Store) rawDB() *sql.DB {
	db, _ := s.write.DB()
	return db
}
