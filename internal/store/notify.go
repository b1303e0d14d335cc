package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// commitChannel is the PostgreSQL NOTIFY channel on which every write
// transaction announces its commit, so live feeds of other instances on the
// same database wake up.
const commitChannel = "ipa_commits"

// CommitNotice says that a transaction committed events to a task: enough for
// a subscriber to know whether it is behind; it reads the events themselves
// from the store, so NOTIFY's 8000-byte payload limit never matters.
type CommitNotice struct {
	Instance string // the instance that committed
	TaskID   string
	Version  int64 // task version after the commit
	Position int64 // position of the commit's last event
}

// notifyCommits queues, inside the write transaction, one commit notice per
// request that wrote events, naming its last event, in position order:
// PostgreSQL delivers them only if the transaction commits, in commit order
// and in the order they were sent. SQLite has a single process, whose feeds
// hear commits in memory.
func (s *Store) notifyCommits(tx *gorm.DB, batch []*writeReq) error {
	if !s.postgres() {
		return nil
	}
	args := []any{commitChannel}
	var ph []string
	for _, r := range batch {
		if r.err != nil || len(r.events) == 0 {
			continue
		}
		last := r.events[len(r.events)-1]
		args = append(args, s.instance+"|"+last.TaskID+"|"+strconv.FormatInt(last.Version, 10)+"|"+strconv.FormatInt(last.Position, 10))
		ph = append(ph, "?")
	}
	// unnest yields the array in order, and pg_notify runs once per row as
	// it is produced.
	return tx.Exec(`SELECT pg_notify(?, p) FROM unnest(ARRAY[`+strings.Join(ph, ", ")+`]::text[]) AS p`, args...).Error
}

func parseNotice(payload string) (CommitNotice, error) {
	parts := strings.Split(payload, "|")
	if len(parts) != 4 {
		return CommitNotice{}, fmt.Errorf("malformed commit notice %q", payload)
	}
	v, err1 := strconv.ParseInt(parts[2], 10, 64)
	p, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return CommitNotice{}, fmt.Errorf("malformed commit notice %q: %w", payload, err)
	}
	return CommitNotice{Instance: parts[0], TaskID: parts[1], Version: v, Position: p}, nil
}

// Instance returns the name this store gives itself in commit notices.
func (s *Store) Instance() string { return s.instance }

// listenRetry is the pause before reconnecting a lost LISTEN connection.
const listenRetry = time.Second

// ListenCommits delivers the commit notices of other instances on this
// PostgreSQL database to onCommit until ctx ends. A notice may be lost while
// the connection is down, so after every (re)connect it calls onResync,
// which must make subscribers read the store. It returns when ctx ends; on
// SQLite it returns at once (there are no other instances).
func (s *Store) ListenCommits(ctx context.Context, onCommit func(CommitNotice), onResync func()) {
	if !s.postgres() {
		return
	}
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, onCommit, onResync)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("commit notices: connection lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(listenRetry):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, onCommit func(CommitNotice), onResync func()) error {
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{commitChannel, tokenChannel, podCommandChannel, podCommandDoneChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	onResync()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if s.heardToken(n.Channel, n.Payload) || s.heardPodCommand(n.Channel, n.Payload) {
			continue
		}
		notice, err := parseNotice(n.Payload)
		if err != nil {
			s.log.Warn("commit notices: ignored", "err", err)
			continue
		}
		if notice.Instance != s.instance {
			onCommit(notice)
		}
	}
}
