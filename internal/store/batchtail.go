package store

import (
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// The tail of a batch on PostgreSQL, in one statement.
//
// A batch ends by moving the task counters, taking the position counter,
// inserting the batch's events and queueing its commit notices (batch.go).
// The counter rows and the position row are hot: every batch of every
// instance locks them, and holds them until its COMMIT. Run as four
// statements, each a round trip, they are held for four round trips plus
// the commit; on PostgreSQL the tail is one statement, so they are held for
// one round trip plus the commit, and each batch costs the database three
// statements fewer. That matters most with several instances, whose batches
// are smaller and queue on the same rows:
//
//	WITH c AS (INSERT INTO task_counts … ON CONFLICT … DO UPDATE … RETURNING 1),
//	     p AS (UPDATE positions SET last = last + $total WHERE id = 1
//	           AND (SELECT count(*) FROM c) >= 0 RETURNING last),
//	     e AS (INSERT INTO events (position, …)
//	           SELECT p.last - $total + v.ord, … FROM p, (VALUES …) v (ord, …))
//	SELECT p.last, pg_notify($channel, n.prefix || (p.last - $total + n.ord))
//	FROM p, (VALUES …) n (ord, prefix) ORDER BY n.ord
//
// The subquery on c makes the counters be taken before the position row, the
// order every writer keeps (counts.go); e, which nothing reads, runs to the
// end of the statement as every data-modifying WITH does. Positions are the
// same as the separate statements give: the batch's events in request order,
// ending at the counter's new value.

// tailEventColumns are the events columns the tail inserts, after position, with
// the type each value is cast to.
var tailEventColumns = []struct{ name, cast string }{
	{"id", "uuid"}, {"stream_id", "uuid"}, {"version", "bigint"}, {"type", "text"}, {"data", "jsonb"},
	{"actor_id", "text"}, {"correlation_id", "text"}, {"causation_id", "text"}, {"occurred_at", "bigint"},
}

// maxTailParams keeps the statement's parameters under PostgreSQL's limit of
// 65,535; a larger batch (events by the thousand) takes the separate
// statements, which split the insert.
const maxTailParams = 60000

// tailFits reports whether the batch's tail can run as one statement.
func tailFits(total, counters, notices int) bool {
	return 4+4*counters+(len(tailEventColumns)+1)*total+2*notices <= maxTailParams
}

// finishBatchInOneStatement moves the counters, gives the batch's events
// their positions, inserts them and queues the commit notices, in one
// statement (PostgreSQL; total > 0). It must be the last thing a write
// transaction does before COMMIT.
func (s *Store) finishBatchInOneStatement(tx *gorm.DB, batch []*writeReq, total int, counts countDelta) error {
	var q strings.Builder
	var args []any
	q.WriteString("WITH ")
	keys := counts.sortedKeys()
	if len(keys) > 0 {
		q.WriteString("c AS (INSERT INTO task_counts (status, phase, archived, n) VALUES ")
		for i, k := range keys {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?::text, ?::text, ?::boolean, ?::bigint)")
			args = append(args, k.status, k.phase, k.archived, counts[k])
		}
		q.WriteString(" ON CONFLICT (status, phase, archived) DO UPDATE SET n = task_counts.n + excluded.n RETURNING 1),\n")
		q.WriteString("p AS (UPDATE positions SET last = last + ? WHERE id = 1 AND (SELECT count(*) FROM c) >= 0 RETURNING last),\n")
	} else {
		q.WriteString("p AS (UPDATE positions SET last = last + ? WHERE id = 1 RETURNING last),\n")
	}
	args = append(args, total)

	q.WriteString("e AS (INSERT INTO events (position")
	for _, c := range tailEventColumns {
		q.WriteString(", " + c.name)
	}
	q.WriteString(") SELECT p.last - ? + v.ord")
	args = append(args, total)
	for _, c := range tailEventColumns {
		q.WriteString(", v." + c.name)
	}
	q.WriteString(" FROM p, (VALUES ")
	ord := 0
	type notice struct {
		ord    int
		prefix string
	}
	var notices []notice
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		for _, e := range r.events {
			if ord > 0 {
				q.WriteString(", ")
			}
			ord++
			q.WriteString("(?::bigint")
			for _, c := range tailEventColumns {
				q.WriteString(", ?::" + c.cast)
			}
			q.WriteString(")")
			row := eventToRow(e)
			args = append(args, ord, row.ID, row.StreamID, row.Version, row.Type, row.Data,
				row.ActorID, row.CorrelationID, row.CausationID, row.OccurredAt)
		}
		if n := len(r.events); n > 0 {
			last := r.events[n-1]
			notices = append(notices, notice{ord: ord, prefix: s.instance + "|" + last.TaskID + "|" + strconv.FormatInt(last.Version, 10) + "|"})
		}
	}
	q.WriteString(") AS v (ord")
	for _, c := range tailEventColumns {
		q.WriteString(", " + c.name)
	}
	q.WriteString("))\n")

	q.WriteString("SELECT p.last, pg_notify(?, n.prefix || (p.last - ? + n.ord)::text) FROM p, (VALUES ")
	args = append(args, commitChannel, total)
	for i, n := range notices {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?::bigint, ?::text)")
		args = append(args, n.ord, n.prefix)
	}
	q.WriteString(") AS n (ord, prefix) ORDER BY n.ord")

	rows, err := tx.Raw(q.String(), args...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	var last int64
	for rows.Next() {
		var notified any
		if err := rows.Scan(&last, &notified); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if last == 0 {
		return fmt.Errorf("store: positions counter row is missing")
	}
	assignPositions(batch, last, total)
	s.allocated(batch)
	return nil
}
