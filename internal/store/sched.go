package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Scheduling lives here so every instance obeys one limit. A slot is a pod
// lease (a pod runs, starts or backs off) or a granted pod_queue row (a pod
// given a slot that its instance is about to start); SaveLease turns the one
// into the other in one transaction. Every decision that gives a slot —
// Admit and Dispatch — first locks the one scheduler row, so decisions of
// all instances are serial and each counts the slots of all the others
// (on SQLite the single writer connection serialises them already).

// maxDispatchScan bounds how many queued pods one dispatch looks at, in
// queue order: a freed slot never costs a scan of the whole queue.
const maxDispatchScan = 500

// Grant is a slot given to a queued pod: the instance that must start it.
type Grant struct {
	TaskID     string
	InstanceID string
	Trigger    string
	QueuedAt   int64 // unix nanoseconds on the database's clock
}

// lockScheduler takes the scheduler row lock for the rest of tx.
func lockScheduler(tx *gorm.DB) error {
	return tx.Exec(`UPDATE scheduler SET runs = runs + 1 WHERE id = 1`).Error
}

// limitsIn returns every limit by key.
func limitsIn(tx *gorm.DB) (map[string]int, error) {
	var rows []struct {
		Key string
		Lim int
	}
	if err := tx.Raw(`SELECT key, lim FROM concurrency_limits`).Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Key] = r.Lim
	}
	return out, nil
}

// slotsHeld counts the slots held under key: pod leases and granted rows of
// the tasks the key covers. One statement, so one snapshot: a pod starting
// meanwhile moves its slot from its granted row to its lease in one commit,
// and two statements (PostgreSQL's READ COMMITTED takes a snapshot per
// statement) could see it in neither and give its slot away again.
func slotsHeld(tx *gorm.DB, key string) (int, error) {
	var n int64
	var err error
	switch {
	case key == ipa.LimitGlobal:
		err = tx.Raw(`SELECT (SELECT COUNT(*) FROM pod_leases) + (SELECT COUNT(*) FROM pod_queue WHERE granted = ?)`, true).Scan(&n).Error
	case len(key) > len(ipa.LimitRuntimePrefix) && key[:len(ipa.LimitRuntimePrefix)] == ipa.LimitRuntimePrefix:
		rt := key[len(ipa.LimitRuntimePrefix):]
		err = tx.Raw(`SELECT (SELECT COUNT(*) FROM pod_leases l JOIN tasks t ON t.id = l.task_id WHERE t.runtime = ?)
			+ (SELECT COUNT(*) FROM pod_queue q JOIN tasks t ON t.id = q.task_id WHERE q.granted = ? AND t.runtime = ?)`, rt, true, rt).Scan(&n).Error
	default:
		k, v, ok := cutLabelKey(key)
		if !ok {
			return 0, nil
		}
		err = tx.Raw(`SELECT (SELECT COUNT(*) FROM pod_leases l JOIN task_labels tl ON tl.task_id = l.task_id WHERE tl.key = ? AND tl.value = ?)
			+ (SELECT COUNT(*) FROM pod_queue q JOIN task_labels tl ON tl.task_id = q.task_id WHERE q.granted = ? AND tl.key = ? AND tl.value = ?)`, k, v, true, k, v).Scan(&n).Error
	}
	return int(n), err
}

func cutLabelKey(key string) (k, v string, ok bool) {
	if len(key) <= len(ipa.LimitLabelPrefix) || key[:len(ipa.LimitLabelPrefix)] != ipa.LimitLabelPrefix {
		return "", "", false
	}
	rest := key[len(ipa.LimitLabelPrefix):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '=' {
			return rest[:i], rest[i+1:], true
		}
	}
	return "", "", false
}

// Admit decides a start of t's pod received by instance: Admitted (a slot
// is held for it, or no limit covers it: start it now), Queued (a limit
// covering it is full: it joins the queue; blocking names those limits and
// position is its place, 1 first) or AlreadyQueued. A pod that already holds
// a lease is Admitted without a new slot (the supervisor answers that it
// runs).
func (s *Store) Admit(ctx context.Context, t *ipa.Task, instance, trigger string, now time.Time) (adm ipa.Admission, blocking []string, position int, err error) {
	if !validID(t.ID) {
		return 0, nil, 0, ipa.TaskNotFound(t.ID)
	}
	err = s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockScheduler(tx); err != nil {
			return err
		}
		var held int64
		if err := tx.Raw(`SELECT (SELECT COUNT(*) FROM pod_queue WHERE task_id = ?) + (SELECT COUNT(*) FROM pod_leases WHERE task_id = ?)`, t.ID, t.ID).Scan(&held).Error; err != nil {
			return err
		}
		var queued int64
		if err := tx.Raw(`SELECT COUNT(*) FROM pod_queue WHERE task_id = ?`, t.ID).Scan(&queued).Error; err != nil {
			return err
		}
		if queued > 0 {
			adm = ipa.AlreadyQueued
			return nil
		}
		if held > 0 {
			adm = ipa.Admitted
			return nil
		}
		limits, err := limitsIn(tx)
		if err != nil {
			return err
		}
		covered := false
		for _, k := range ipa.LimitKeysOf(t) {
			lim, ok := limits[k]
			if !ok {
				continue
			}
			covered = true
			n, err := slotsHeld(tx, k)
			if err != nil {
				return err
			}
			if n >= lim {
				blocking = append(blocking, k)
			}
		}
		if !covered {
			adm = ipa.Admitted
			return nil
		}
		granted := len(blocking) == 0
		var grantedAt *int64
		if granted {
			n := nanos(now)
			grantedAt = &n
		}
		if err := tx.Exec(`INSERT INTO pod_queue (task_id, instance_id, trigger, priority, queued_at, granted, granted_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.ID, instance, trigger, t.Priority, nanos(now), granted, grantedAt).Error; err != nil {
			return err
		}
		if granted {
			adm = ipa.Admitted
			return nil
		}
		adm = ipa.Queued
		position, err = queuePosition(tx, t.ID)
		return err
	})
	if err != nil {
		return 0, nil, 0, s.wrap(fmt.Errorf("store: admit pod: %w", err))
	}
	return adm, blocking, position, nil
}

// queuePosition is the place of a queued task: 1 + the queued (not granted)
// pods ahead of it in priority order, then oldest first. 0 when it is not
// queued.
func queuePosition(tx *gorm.DB, taskID string) (int, error) {
	var rows []struct {
		Priority int
		QueuedAt int64
	}
	if err := tx.Raw(`SELECT priority, queued_at FROM pod_queue WHERE task_id = ? AND granted = ?`, taskID, false).Scan(&rows).Error; err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, nil
	}
	r := rows[0]
	var ahead int64
	err := tx.Raw(`SELECT COUNT(*) FROM pod_queue WHERE granted = ? AND (priority > ? OR (priority = ? AND (queued_at < ? OR (queued_at = ? AND task_id < ?))))`,
		false, r.Priority, r.Priority, r.QueuedAt, r.QueuedAt, taskID).Scan(&ahead).Error
	return int(ahead) + 1, err
}

// QueuePosition returns the task's place in the queue (1 first), or 0 when
// its pod is not queued.
func (s *Store) QueuePosition(ctx context.Context, taskID string) (int, error) {
	if !validID(taskID) {
		return 0, nil
	}
	n, err := queuePosition(s.read.WithContext(ctx), taskID)
	if err != nil {
		return 0, s.wrap(fmt.Errorf("store: queue position: %w", err))
	}
	return n, nil
}

// QueuedCount returns how many pods wait in the queue (not yet granted).
func (s *Store) QueuedCount(ctx context.Context) (int, error) {
	var n int64
	if err := s.read.WithContext(ctx).Raw(`SELECT COUNT(*) FROM pod_queue WHERE granted = ?`, false).Scan(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: queued count: %w", err))
	}
	return int(n), nil
}

// QueuedTasks returns the ids of the queued pods' tasks in queue order, at
// most limit.
func (s *Store) QueuedTasks(ctx context.Context, limit int) ([]string, error) {
	var ids []string
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id FROM pod_queue WHERE granted = ? ORDER BY priority DESC, queued_at, task_id LIMIT ?`, false, limit).Scan(&ids).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: queued tasks: %w", err))
	}
	return ids, nil
}

// Dispatch gives free slots to queued pods, in priority order then oldest
// first; a pod a full limit still holds back is passed over for the next
// that fits. Each grant goes to the instance that received the start, or to
// me when that one's heartbeat is older than cutoff (dead); granted rows of
// dead instances move to me as well. Queue rows of closed tasks are dropped.
// On PostgreSQL every other receiving instance is notified at commit (on
// the pod command channel). Returns the grants made.
func (s *Store) Dispatch(ctx context.Context, me string, cutoff, now time.Time) ([]Grant, error) {
	// An empty queue (the usual case) costs one read, not a write
	// transaction on the scheduler row every look.
	var any []string
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id FROM pod_queue LIMIT 1`).Scan(&any).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: dispatch queued pods: %w", err))
	}
	if len(any) == 0 {
		return nil, nil
	}
	var out []Grant
	var others []string
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		out, others = nil, nil
		if err := lockScheduler(tx); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM pod_queue WHERE task_id IN (SELECT id FROM tasks WHERE closed_at IS NOT NULL)`).Error; err != nil {
			return err
		}
		var alive []string
		if err := tx.Raw(`SELECT id FROM instances WHERE heartbeat_at >= ?`, nanos(cutoff)).Scan(&alive).Error; err != nil {
			return err
		}
		live := map[string]bool{me: true}
		for _, id := range alive {
			live[id] = true
		}
		// Slots granted to a dead instance would never start: they are mine.
		var stale []Grant
		if err := tx.Raw(`SELECT task_id, instance_id, trigger FROM pod_queue WHERE granted = ? AND instance_id <> ?`, true, me).Scan(&stale).Error; err != nil {
			return err
		}
		for _, g := range stale {
			if live[g.InstanceID] {
				continue
			}
			if err := tx.Exec(`UPDATE pod_queue SET instance_id = ? WHERE task_id = ?`, me, g.TaskID).Error; err != nil {
				return err
			}
			out = append(out, Grant{TaskID: g.TaskID, InstanceID: me, Trigger: g.Trigger})
		}
		limits, err := limitsIn(tx)
		if err != nil {
			return err
		}
		var rows []struct {
			TaskID     string
			InstanceID string
			Trigger    string
			Runtime    string
			Labels     string
		}
		if err := tx.Raw(`SELECT q.task_id, q.instance_id, q.trigger, t.runtime, t.labels FROM pod_queue q JOIN tasks t ON t.id = q.task_id
			WHERE q.granted = ? ORDER BY q.priority DESC, q.queued_at, q.task_id LIMIT ?`, false, maxDispatchScan).Scan(&rows).Error; err != nil {
			return err
		}
		held := map[string]int{}
		for k := range limits {
			n, err := slotsHeld(tx, k)
			if err != nil {
				return err
			}
			held[k] = n
		}
		notify := map[string]bool{}
		for _, r := range rows {
			if g, ok := limits[ipa.LimitGlobal]; ok && held[ipa.LimitGlobal] >= g {
				break
			}
			t := &ipa.Task{Runtime: r.Runtime}
			if err := json.Unmarshal([]byte(r.Labels), &t.Labels); err != nil {
				t.Labels = nil
			}
			keys := ipa.LimitKeysOf(t)
			fits := true
			for _, k := range keys {
				if lim, ok := limits[k]; ok && held[k] >= lim {
					fits = false
					break
				}
			}
			if !fits {
				continue
			}
			to := r.InstanceID
			if !live[to] {
				to = me
			}
			if err := tx.Exec(`UPDATE pod_queue SET granted = ?, granted_at = ?, instance_id = ? WHERE task_id = ?`, true, nanos(now), to, r.TaskID).Error; err != nil {
				return err
			}
			for _, k := range keys {
				if _, ok := limits[k]; ok {
					held[k]++
				}
			}
			out = append(out, Grant{TaskID: r.TaskID, InstanceID: to, Trigger: r.Trigger})
			if to != me {
				notify[to] = true
			}
		}
		for id := range notify {
			others = append(others, id)
		}
		sort.Strings(others)
		if s.postgres() {
			for _, id := range others {
				if err := tx.Exec(`SELECT pg_notify(?, ?)`, podCommandChannel, id).Error; err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: dispatch queued pods: %w", err))
	}
	return out, nil
}

// Grants returns the slots granted to instance whose pods it has not started
// yet.
func (s *Store) Grants(ctx context.Context, instance string) ([]Grant, error) {
	var out []Grant
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id, instance_id, trigger, queued_at FROM pod_queue WHERE granted = ? AND instance_id = ? ORDER BY granted_at, task_id`, true, instance).Scan(&out).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: grants: %w", err))
	}
	return out, nil
}

// ReleaseGrant gives back the slot granted to the task's pod (its start
// failed, or it turned out to run already). Reports whether there was one.
func (s *Store) ReleaseGrant(ctx context.Context, taskID string) (bool, error) {
	if !validID(taskID) {
		return false, nil
	}
	res := s.write.WithContext(ctx).Exec(`DELETE FROM pod_queue WHERE task_id = ? AND granted = ?`, taskID, true)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: release grant: %w", res.Error))
	}
	return res.RowsAffected > 0, nil
}

// Dequeue takes the task's pod out of the queue (a stop of a queued pod).
// Reports whether it was queued; a granted slot is not dequeued (its pod is
// starting: stop that instead).
func (s *Store) Dequeue(ctx context.Context, taskID string) (bool, error) {
	if !validID(taskID) {
		return false, nil
	}
	res := s.write.WithContext(ctx).Exec(`DELETE FROM pod_queue WHERE task_id = ? AND granted = ?`, taskID, false)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: dequeue pod: %w", res.Error))
	}
	return res.RowsAffected > 0, nil
}

// SetConcurrencyLimit sets the limit of key, or removes it when limit is
// nil. The key must be canonical (ipa.CheckLimitKey). Returns the limit as
// it stands (Limit 0 and a zero UpdatedAt when removed), or ECONFLICT when
// MaxConcurrencyLimits exist already.
func (s *Store) SetConcurrencyLimit(ctx context.Context, key string, limit *int, now time.Time) (ipa.ConcurrencyLimit, error) {
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockScheduler(tx); err != nil {
			return err
		}
		if limit == nil {
			return tx.Exec(`DELETE FROM concurrency_limits WHERE key = ?`, key).Error
		}
		var n int64
		if err := tx.Raw(`SELECT COUNT(*) FROM concurrency_limits WHERE key <> ?`, key).Scan(&n).Error; err != nil {
			return err
		}
		if n >= ipa.MaxConcurrencyLimits {
			return ipa.Errorf(ipa.ECONFLICT, "TOO_MANY_LIMITS", "At most %d concurrency limits may exist.", ipa.MaxConcurrencyLimits)
		}
		return tx.Exec(`INSERT INTO concurrency_limits (key, lim, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET lim = excluded.lim, updated_at = excluded.updated_at`, key, *limit, nanos(now)).Error
	})
	if err != nil {
		if e, ok := err.(*ipa.Error); ok {
			return ipa.ConcurrencyLimit{}, e
		}
		return ipa.ConcurrencyLimit{}, s.wrap(fmt.Errorf("store: set concurrency limit: %w", err))
	}
	if limit == nil {
		return ipa.ConcurrencyLimit{Key: key}, nil
	}
	out, err := s.ConcurrencyLimits(ctx)
	if err != nil {
		return ipa.ConcurrencyLimit{}, err
	}
	for _, l := range out {
		if l.Key == key {
			return l, nil
		}
	}
	return ipa.ConcurrencyLimit{Key: key, Limit: *limit, UpdatedAt: now}, nil
}

// ConcurrencyLimits returns every limit, by key, with the slots held and
// the pods queued under it now.
func (s *Store) ConcurrencyLimits(ctx context.Context) ([]ipa.ConcurrencyLimit, error) {
	var out []ipa.ConcurrencyLimit
	err := s.read.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []struct {
			Key       string
			Lim       int
			UpdatedAt int64
		}
		if err := tx.Raw(`SELECT key, lim, updated_at FROM concurrency_limits ORDER BY key`).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			n, err := slotsHeld(tx, r.Key)
			if err != nil {
				return err
			}
			q, err := queuedUnder(tx, r.Key)
			if err != nil {
				return err
			}
			out = append(out, ipa.ConcurrencyLimit{Key: r.Key, Limit: r.Lim, Running: n, Queued: q, UpdatedAt: fromNanos(r.UpdatedAt)})
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: concurrency limits: %w", err))
	}
	return out, nil
}

// queuedUnder counts the queued pods key covers.
func queuedUnder(tx *gorm.DB, key string) (int, error) {
	var n int64
	var err error
	switch {
	case key == ipa.LimitGlobal:
		err = tx.Raw(`SELECT COUNT(*) FROM pod_queue WHERE granted = ?`, false).Scan(&n).Error
	case len(key) > len(ipa.LimitRuntimePrefix) && key[:len(ipa.LimitRuntimePrefix)] == ipa.LimitRuntimePrefix:
		err = tx.Raw(`SELECT COUNT(*) FROM pod_queue q JOIN tasks t ON t.id = q.task_id WHERE q.granted = ? AND t.runtime = ?`, false, key[len(ipa.LimitRuntimePrefix):]).Scan(&n).Error
	default:
		k, v, ok := cutLabelKey(key)
		if !ok {
			return 0, nil
		}
		err = tx.Raw(`SELECT COUNT(*) FROM pod_queue q JOIN task_labels tl ON tl.task_id = q.task_id WHERE q.granted = ? AND tl.key = ? AND tl.value = ?`, false, k, v).Scan(&n).Error
	}
	return int(n), err
}

// WaitingTasks returns open tasks whose pod waits for dependencies
// (WAITING), oldest first, at most limit.
func (s *Store) WaitingTasks(ctx context.Context, limit int) ([]*ipa.Task, error) {
	return s.tasksWhere(ctx, "waiting pods", `SELECT `+taskColumns+` FROM tasks WHERE pod_state = ? AND closed_at IS NULL ORDER BY updated_at, id LIMIT ?`,
		string(ipa.PodWaiting), limit)
}

// RequeueLease gives the task's pod back to the queue when owner holds its
// lease and the task's stream says the pod is QUEUED: its start was granted
// (the lease took the slot over) and never recorded, because the instance
// starting it died, and whatever ran of it is gone (the caller made sure).
// In one transaction the lease goes and the pod queues again at its old
// place (its newest pod_queued: time and trigger), under the scheduler row
// lock; the next dispatch grants it a slot like any queued pod. Reports
// whether it did; a pod in any other state is left to the caller.
func (s *Store) RequeueLease(ctx context.Context, owner, taskID string, now time.Time) (bool, error) {
	if !validID(taskID) {
		return false, nil
	}
	done := false
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		done = false
		if err := lockScheduler(tx); err != nil {
			return err
		}
		var rows []struct {
			Priority int
			PodState string
			ClosedAt *int64
		}
		if err := tx.Raw(`SELECT priority, pod_state, closed_at FROM tasks WHERE id = ?`, taskID).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 || rows[0].ClosedAt != nil || rows[0].PodState != string(ipa.PodQueued) {
			return nil
		}
		res := tx.Exec(`DELETE FROM pod_leases WHERE task_id = ? AND owner = ?`, taskID, owner)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return nil // not this owner's pod
		}
		var evs []struct {
			Data       string
			OccurredAt int64
		}
		if err := tx.Raw(`SELECT data, occurred_at FROM events WHERE stream_id = ? AND type = ? ORDER BY version DESC LIMIT 1`,
			taskID, ipa.EventPodQueued).Scan(&evs).Error; err != nil {
			return err
		}
		trigger, at := ipa.TriggerManual, nanos(now)
		if len(evs) > 0 {
			var d ipa.PodQueuedData
			if json.Unmarshal([]byte(evs[0].Data), &d) == nil && d.Trigger != "" {
				trigger = d.Trigger
			}
			at = evs[0].OccurredAt
		}
		if err := tx.Exec(`INSERT INTO pod_queue (task_id, instance_id, trigger, priority, queued_at, granted) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (task_id) DO NOTHING`, taskID, owner, trigger, rows[0].Priority, at, false).Error; err != nil {
			return err
		}
		done = true
		return nil
	})
	if err != nil {
		return false, s.wrap(fmt.Errorf("store: requeue pod: %w", err))
	}
	return done, nil
}

// RequeueOrphans puts back in the queue, for instance to start, the open
// pods the stream says are QUEUED that have neither a queue row nor a lease
// and whose task has not changed since cutoff: pods whose place was lost
// with a server that died mid-way (between taking a stopped pod out of the
// queue and recording its stop, or, in a database written before the claim
// of a start named its process, with a half-made lease dropped since). A
// server calls it once as it starts, after it settled its own leases, and
// it does something only when no other instance is alive (no heartbeat
// since cutoff): a live one may be between taking a pod's row or lease
// away and recording why, which looks the same for a moment. Each queues
// at the time of its last change, trigger manual. Returns how many.
func (s *Store) RequeueOrphans(ctx context.Context, instance string, cutoff, now time.Time) (int, error) {
	var n int64
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		n = 0
		if err := lockScheduler(tx); err != nil {
			return err
		}
		var others int64
		if err := tx.Raw(`SELECT COUNT(*) FROM instances WHERE id <> ? AND heartbeat_at >= ?`, instance, nanos(cutoff)).Scan(&others).Error; err != nil {
			return err
		}
		if others > 0 {
			return nil
		}
		res := tx.Exec(`INSERT INTO pod_queue (task_id, instance_id, trigger, priority, queued_at, granted)
			SELECT t.id, ?, ?, t.priority, t.updated_at, ? FROM tasks t
			WHERE t.pod_state = ? AND t.closed_at IS NULL AND t.updated_at < ?
			AND NOT EXISTS (SELECT 1 FROM pod_queue q WHERE q.task_id = t.id)
			AND NOT EXISTS (SELECT 1 FROM pod_leases l WHERE l.task_id = t.id)`,
			instance, ipa.TriggerManual, false, string(ipa.PodQueued), nanos(cutoff))
		n = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, s.wrap(fmt.Errorf("store: requeue orphaned pods: %w", err))
	}
	return int(n), nil
}
