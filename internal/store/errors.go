package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// errUnavailable is what callers see when the database cannot be reached. Its
// message names no host, file or driver: the cause is wrapped alongside it
// for the logs only.
func errUnavailable() *ipa.Error {
	return &ipa.Error{Code: ipa.EUNAVAILABLE, Reason: ipa.ReasonStoreUnavailable, Message: "The database is unreachable."}
}

// wrap turns a failure to reach the database into an EUNAVAILABLE *ipa.Error
// that still wraps the cause; every other error is returned unchanged.
func (s *Store) wrap(err error) error {
	if err == nil || !unreachable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", errUnavailable(), err)
}

func unreachable(err error) bool {
	var ie *ipa.Error
	if errors.As(err, &ie) {
		return false // already decided
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-03: the server shuts down or
		// is starting; 53300: too many connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	// database/sql's closed-pool error is not exported; nor are SQLite's
	// open failures.
	for _, m := range []string{"sql: database is closed", "unable to open database file", "failed to connect to", "conn closed"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}
