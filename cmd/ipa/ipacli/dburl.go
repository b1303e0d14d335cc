package ipacli

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ipa-dev/ipa/internal/client"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// checkDatabaseURL refuses, before anything is opened, a --database value
// that would silently start on the wrong store: a path without a scheme
// (suggesting sqlite://), a scheme ipa does not speak, or a SQLite file in a
// directory that does not exist — a typo there would otherwise create the
// directories and start on an empty store. With createDirs the directory is
// created instead. Messages never repeat a PostgreSQL URL, which may hold a
// password.
func checkDatabaseURL(raw string, createDirs bool) error {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if raw == "" {
			return usageError("--database is empty: want sqlite://PATH or postgres://USER@HOST:PORT/DB")
		}
		return usageError("%s", fmt.Sprintf("--database %s: not a database URL (want sqlite://PATH or postgres://USER@HOST:PORT/DB); did you mean sqlite://%s?", raw, raw))
	}
	switch scheme {
	case "postgres", "postgresql":
		return nil
	case "sqlite":
	default:
		return usageError("%s", fmt.Sprintf("--database: unsupported scheme %q (want sqlite:// or postgres://)", scheme))
	}
	path := rest
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return usageError("--database sqlite:// names no file: want sqlite://PATH, e.g. sqlite://./ipa.db")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return usageError("%s", fmt.Sprintf("--database %s: %s is not a directory", raw, dir))
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist) && createDirs:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--create-dirs: %w", err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return usageError("%s", fmt.Sprintf("--database %s: directory %s does not exist; create it, or pass --create-dirs to have ipa create it", raw, dir))
	}
	return fmt.Errorf("--database %s: %w", raw, err)
}

// describeOpenError turns a failure to reach PostgreSQL into one line a
// person can act on: where ipa tried to connect and why it could not, with
// no password. Other errors are returned as they are. The result still wraps
// err, so its code (EUNAVAILABLE) decides the exit code.
func describeOpenError(raw string, err error) error {
	if err == nil || client.ErrorCode(err) != ipa.EUNAVAILABLE && ipa.ErrorCode(err) != ipa.EUNAVAILABLE {
		return err
	}
	scheme, _, _ := strings.Cut(raw, "://")
	if scheme != "postgres" && scheme != "postgresql" {
		return err
	}
	where := "the PostgreSQL server"
	if cfg, perr := pgconn.ParseConfig(raw); perr == nil {
		where = fmt.Sprintf("PostgreSQL at %s (database %q, user %q)", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database, cfg.User)
	}
	return &describedError{msg: fmt.Sprintf("cannot reach %s: %s", where, connectCause(err)), err: err}
}

// connectCause is the most telling part of a connection failure: the
// server's own message, or the network error, without pgx's prefix (which
// repeats the connection settings).
func connectCause(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return ne.Error()
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return err.Error()
}

// describedError replaces an error's message and keeps it for errors.As.
type describedError struct {
	msg string
	err error
}

func (e *describedError) Error() string { return e.msg }
func (e *describedError) Unwrap() error { return e.err }
