package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxInstances bounds ListInstances: a deployment runs a handful.
const maxInstances = 1000

// RegisterInstance records inst as a live instance, replacing an earlier
// row of the same id (the instance restarted). Its heartbeat is
// inst.HeartbeatAt when set, else now on the database's clock (see Now).
// Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) RegisterInstance(ctx context.Context, inst ipa.Instance) error {
	var addr *string
	if inst.Address != "" {
		addr = &inst.Address
	}
	beat, args := s.nowExpr(), []any{}
	if !inst.HeartbeatAt.IsZero() {
		beat = "?"
		args = append(args, nanos(inst.HeartbeatAt))
	}
	args = append([]any{inst.ID, addr, inst.Version, nanos(inst.StartedAt)}, append(args, false)...)
	err := s.write.WithContext(ctx).Exec(`INSERT INTO instances (id, address, version, started_at, heartbeat_at, draining)
		VALUES (?, ?, ?, ?, `+beat+`, ?)
		ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
			started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, draining = excluded.draining`,
		args...).Error
	if err != nil {
		return s.wrap(fmt.Errorf("store: register instance: %w", err))
	}
	return nil
}

// pgNow is the PostgreSQL clock in Unix nanoseconds, the unit of every
// stored time. clock_timestamp, not now(): the time of the statement, not of
// its transaction's start.
const pgNow = `(extract(epoch from clock_timestamp()) * 1000000000)::bigint`

// nowExpr is the SQL for now in Unix nanoseconds: the database's clock on
// PostgreSQL, where instances on different machines compare heartbeats, so
// that skew between their clocks cannot make a live one look dead. On
// SQLite (one machine) it is this process's clock.
func (s *Store) nowExpr() string {
	if s.postgres() {
		return pgNow
	}
	return fmt.Sprintf("%d", time.Now().UnixNano())
}

// Now returns the database's clock on PostgreSQL (this process's clock on
// SQLite): the clock heartbeats are stamped with, against which their age
// must be judged. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if !s.postgres() {
		return time.Now(), nil
	}
	var n int64
	if err := s.read.WithContext(ctx).Raw(`SELECT ` + pgNow).Scan(&n).Error; err != nil {
		return time.Time{}, s.wrap(fmt.Errorf("store: database clock: %w", err))
	}
	return time.Unix(0, n), nil
}

// AdoptInstance makes id the owner of what this server held under a former
// id (the default instance id changed): its pod leases and the pod commands
// addressed to it; the former instance's row goes. Leases another instance
// took over meanwhile are not touched. Returns EUNAVAILABLE when the
// database is unreachable.
func (s *Store) AdoptInstance(ctx context.Context, former, id string) error {
	if former == "" || former == id {
		return nil
	}
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		for _, q := range []string{
			`UPDATE pod_leases SET owner = ? WHERE owner = ?`,
			`UPDATE pod_commands SET instance_id = ? WHERE instance_id = ?`,
		} {
			if err := tx.Exec(q, id, former).Error; err != nil {
				return err
			}
		}
		return tx.Exec(`DELETE FROM instances WHERE id = ?`, former).Error
	})
	if err != nil {
		return s.wrap(fmt.Errorf("store: adopt instance: %w", err))
	}
	return nil
}

// SetInstanceAddress records the address an instance serves on, once known.
func (s *Store) SetInstanceAddress(ctx context.Context, id, addr string) error {
	if err := s.write.WithContext(ctx).Exec(`UPDATE instances SET address = ? WHERE id = ?`, addr, id).Error; err != nil {
		return s.wrap(fmt.Errorf("store: instance address: %w", err))
	}
	return nil
}

// Heartbeat refreshes the instance's heartbeat to now on the database's
// clock (see Now). It reports false when the instance has no row (it was
// removed): the caller registers again.
func (s *Store) Heartbeat(ctx context.Context, id string) (bool, error) {
	res := s.write.WithContext(ctx).Exec(`UPDATE instances SET heartbeat_at = `+s.nowExpr()+` WHERE id = ?`, id)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: heartbeat: %w", res.Error))
	}
	return res.RowsAffected > 0, nil
}

// SetDraining marks the instance as handing its pods over: other instances
// do not hand pods to it. Returns ENOTFOUND for an unknown instance.
func (s *Store) SetDraining(ctx context.Context, id string, draining bool) error {
	res := s.write.WithContext(ctx).Exec(`UPDATE instances SET draining = ? WHERE id = ?`, draining, id)
	if res.Error != nil {
		return s.wrap(fmt.Errorf("store: drain instance: %w", res.Error))
	}
	if res.RowsAffected == 0 {
		return ipa.Errorf(ipa.ENOTFOUND, "INSTANCE_NOT_FOUND", "No instance with id %q.", id)
	}
	return nil
}

// ListInstances returns every registered instance, oldest first, with the
// pod leases each holds; an instance is alive when its heartbeat is younger
// than ttl at now. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) ListInstances(ctx context.Context, now time.Time, ttl time.Duration) ([]ipa.Instance, error) {
	var rows []struct {
		ID          string
		Address     *string
		Version     string
		StartedAt   int64
		HeartbeatAt int64
		Draining    bool
		Pods        int
	}
	err := s.read.WithContext(ctx).Raw(`SELECT i.id, i.address, i.version, i.started_at, i.heartbeat_at, i.draining,
			(SELECT COUNT(*) FROM pod_leases l WHERE l.owner = i.id) AS pods
		FROM instances i ORDER BY i.started_at, i.id LIMIT ?`, maxInstances).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: list instances: %w", err))
	}
	cutoff := nanos(now.Add(-ttl))
	out := make([]ipa.Instance, 0, len(rows))
	for _, r := range rows {
		inst := ipa.Instance{ID: r.ID, Version: r.Version, StartedAt: time.Unix(0, r.StartedAt).UTC(),
			HeartbeatAt: time.Unix(0, r.HeartbeatAt).UTC(), Alive: r.HeartbeatAt >= cutoff, Draining: r.Draining, Pods: r.Pods}
		if r.Address != nil {
			inst.Address = *r.Address
		}
		out = append(out, inst)
	}
	return out, nil
}

// LeaseOwner returns the instance holding the task's pod lease and the
// lease's fencing epoch; found is false when no instance holds one.
func (s *Store) LeaseOwner(ctx context.Context, taskID string) (owner string, epoch int64, found bool, err error) {
	if !validID(taskID) {
		return "", 0, false, nil
	}
	var rows []struct {
		Owner string
		Epoch int64
	}
	if err := s.read.WithContext(ctx).Raw(`SELECT owner, epoch FROM pod_leases WHERE task_id = ?`, taskID).Scan(&rows).Error; err != nil {
		return "", 0, false, s.wrap(fmt.Errorf("store: lease owner: %w", err))
	}
	if len(rows) == 0 {
		return "", 0, false, nil
	}
	return rows[0].Owner, rows[0].Epoch, true, nil
}

// LeaseOwners returns the owner of every pod lease, by task id.
func (s *Store) LeaseOwners(ctx context.Context) (map[string]string, error) {
	var rows []struct{ TaskID, Owner string }
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id, owner FROM pod_leases LIMIT ?`, maxActivePods).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: lease owners: %w", err))
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.TaskID] = r.Owner
	}
	return out, nil
}

// ClaimedLease is a pod lease an instance took over from a dead one.
type ClaimedLease struct {
	TaskID        string
	PreviousOwner string
	Epoch         int64  // the lease's new fencing epoch
	Lease         []byte // the previous owner's reattach data
}

// ClaimDeadLeases moves to me at most limit pod leases whose owner's
// heartbeat is older than cutoff (or which has no instance row), raising
// each lease's epoch. Concurrent claimers skip each other's rows (FOR UPDATE
// SKIP LOCKED), so each lease has one winner. The takeover uses it for the
// leases ClaimDeadLeasePartition's designated survivor left behind.
// PostgreSQL only: SQLite has a single instance and returns nothing.
func (s *Store) ClaimDeadLeases(ctx context.Context, me string, cutoff time.Time, limit int, now time.Time) ([]ClaimedLease, error) {
	if !s.postgres() || limit <= 0 {
		return nil, nil
	}
	var rows []claimedRow
	err := s.write.WithContext(ctx).Raw(`WITH dead AS (
			SELECT l.task_id, l.owner FROM pod_leases l LEFT JOIN instances i ON i.id = l.owner
			WHERE l.owner <> ? AND (i.id IS NULL OR i.heartbeat_at < ?)
			ORDER BY l.updated_at, l.task_id LIMIT ? FOR UPDATE OF l SKIP LOCKED)
		UPDATE pod_leases p SET owner = ?, epoch = p.epoch + 1, updated_at = ?
		FROM dead WHERE p.task_id = dead.task_id
		RETURNING p.task_id::text AS task_id, dead.owner AS previous_owner, p.epoch, p.lease::text AS lease`,
		me, nanos(cutoff), limit, me, nanos(now)).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: claim dead leases: %w", err))
	}
	return claimedLeases(rows), nil
}

// ClaimDeadLeasePartition moves to me the pod leases of dead owners
// (heartbeat older than cutoff, or no instance row) that fall to me: the
// live instances that are not draining, ordered by id, split the dead leases
// by a hash of the task id, so every survivor takes its part in its first
// round, without waiting for the others' claims to shrink what is left. An
// instance that is not live itself (paused past the TTL, draining) claims
// nothing. Each lease's epoch is raised; concurrent claimers skip each
// other's rows, so each lease has one winner. PostgreSQL only.
func (s *Store) ClaimDeadLeasePartition(ctx context.Context, me string, cutoff, now time.Time) ([]ClaimedLease, error) {
	if !s.postgres() {
		return nil, nil
	}
	var rows []claimedRow
	err := s.write.WithContext(ctx).Raw(`WITH live AS (
			SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn, COUNT(*) OVER () AS n
			FROM instances WHERE heartbeat_at >= ? AND NOT draining),
		mine AS (SELECT rn, n FROM live WHERE id = ?),
		dead AS (
			SELECT l.task_id, l.owner FROM pod_leases l LEFT JOIN instances i ON i.id = l.owner CROSS JOIN mine
			WHERE l.owner <> ? AND (i.id IS NULL OR i.heartbeat_at < ?)
				AND mod(abs(hashtext(l.task_id::text)::bigint), mine.n) = mine.rn
			ORDER BY l.updated_at, l.task_id LIMIT ? FOR UPDATE OF l SKIP LOCKED)
		UPDATE pod_leases p SET owner = ?, epoch = p.epoch + 1, updated_at = ?
		FROM dead WHERE p.task_id = dead.task_id
		RETURNING p.task_id::text AS task_id, dead.owner AS previous_owner, p.epoch, p.lease::text AS lease`,
		nanos(cutoff), me, me, nanos(cutoff), maxActivePods, me, nanos(now)).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: claim dead leases: %w", err))
	}
	return claimedLeases(rows), nil
}

type claimedRow struct {
	TaskID        string
	PreviousOwner string
	Epoch         int64
	Lease         string
}

func claimedLeases(rows []claimedRow) []ClaimedLease {
	out := make([]ClaimedLease, len(rows))
	for i, r := range rows {
		out[i] = ClaimedLease{TaskID: r.TaskID, PreviousOwner: r.PreviousOwner, Epoch: r.Epoch, Lease: []byte(r.Lease)}
	}
	return out
}

// NextLeaseExpiry returns the next moment, after now, at which an instance
// other than me that holds a pod lease stops counting as alive if it sends no
// further heartbeat: the earliest heartbeat still younger than ttl, plus ttl.
// ok is false when there is none. The takeover wakes at that moment instead
// of at the next heartbeat tick; instances already dead are the regular
// rounds' to settle. PostgreSQL only.
func (s *Store) NextLeaseExpiry(ctx context.Context, me string, ttl time.Duration, now time.Time) (at time.Time, ok bool, err error) {
	if !s.postgres() {
		return time.Time{}, false, nil
	}
	var hb *int64
	err = s.read.WithContext(ctx).Raw(`SELECT MIN(i.heartbeat_at) FROM instances i
		WHERE i.id <> ? AND i.heartbeat_at >= ? AND EXISTS (SELECT 1 FROM pod_leases l WHERE l.owner = i.id)`,
		me, nanos(now.Add(-ttl))).Scan(&hb).Error
	if err != nil {
		return time.Time{}, false, s.wrap(fmt.Errorf("store: next lease expiry: %w", err))
	}
	if hb == nil {
		return time.Time{}, false, nil
	}
	return time.Unix(0, *hb).Add(ttl), true, nil
}

// DeadLeaseShare returns how many leases one live instance should claim in a
// takeover round: the leases of dead owners divided by the live instances,
// rounded up (0 when no owner is dead).
func (s *Store) DeadLeaseShare(ctx context.Context, me string, cutoff time.Time) (int, error) {
	if !s.postgres() {
		return 0, nil
	}
	var row struct{ Dead, Live int }
	err := s.read.WithContext(ctx).Raw(`SELECT
		(SELECT COUNT(*) FROM pod_leases l LEFT JOIN instances i ON i.id = l.owner
			WHERE l.owner <> ? AND (i.id IS NULL OR i.heartbeat_at < ?)) AS dead,
		(SELECT COUNT(*) FROM instances WHERE heartbeat_at >= ? AND NOT draining) AS live`,
		me, nanos(cutoff), nanos(cutoff)).Scan(&row).Error
	if err != nil {
		return 0, s.wrap(fmt.Errorf("store: dead leases: %w", err))
	}
	if row.Dead == 0 {
		return 0, nil
	}
	live := max(row.Live, 1)
	return (row.Dead + live - 1) / live, nil
}

// ClosedLeasedTasks returns the tasks owner holds a pod lease for although
// they are closed: pods the owner must stop (a close committed elsewhere
// whose command did not reach it).
func (s *Store) ClosedLeasedTasks(ctx context.Context, owner string) ([]string, error) {
	var ids []string
	err := s.read.WithContext(ctx).Raw(`SELECT l.task_id FROM pod_leases l JOIN tasks t ON t.id = l.task_id
		WHERE l.owner = ? AND t.status IN (?, ?) LIMIT ?`,
		owner, string(ipa.StatusCompleted), string(ipa.StatusCancelled), maxActivePods).Scan(&ids).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: closed leased tasks: %w", err))
	}
	return ids, nil
}

// checkPodFence refuses, inside the append transaction tx, a pod fact of the
// owner named in ctx (ipa.WithPodFence) when another instance holds the
// task's lease. On PostgreSQL the lease row is read FOR SHARE, so a takeover
// waits for (or skips) this transaction and the write is ordered before it.
func (s *Store) checkPodFence(ctx context.Context, tx *gorm.DB, taskID string) error {
	owner, ok := ipa.PodFenceFrom(ctx)
	if !ok {
		return nil
	}
	q := `SELECT owner FROM pod_leases WHERE task_id = ?`
	if s.postgres() {
		q += ` FOR SHARE`
	}
	var owners []string
	if err := tx.Raw(q, taskID).Scan(&owners).Error; err != nil {
		return err
	}
	if len(owners) > 0 && owners[0] != owner {
		return ipa.ErrLeaseLost
	}
	return nil
}

// LeaseOwnersOf returns the owner of the pod lease of each of ids that has
// one, by task id.
func (s *Store) LeaseOwnersOf(ctx context.Context, ids []string) (map[string]string, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if validID(id) {
			valid = append(valid, id)
		}
	}
	out := make(map[string]string, len(valid))
	if len(valid) == 0 {
		return out, nil
	}
	var rows []struct{ TaskID, Owner string }
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id, owner FROM pod_leases WHERE task_id IN ?`, valid).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: lease owners: %w", err))
	}
	for _, r := range rows {
		out[r.TaskID] = r.Owner
	}
	return out, nil
}

// TransferLease hands owner's lease of the task to another instance (a
// drain), raising its epoch. It reports false when owner does not hold it.
func (s *Store) TransferLease(ctx context.Context, owner, to, taskID string, now time.Time) (bool, error) {
	if !validID(taskID) {
		return false, nil
	}
	res := s.write.WithContext(ctx).Exec(`UPDATE pod_leases SET owner = ?, epoch = epoch + 1, updated_at = ? WHERE task_id = ? AND owner = ?`,
		to, nanos(now), taskID, owner)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: transfer lease: %w", res.Error))
	}
	return res.RowsAffected > 0, nil
}

// InstanceDraining reports whether the instance was asked to hand its pods
// over (drainInstance).
func (s *Store) InstanceDraining(ctx context.Context, id string) (bool, error) {
	var rows []bool
	if err := s.read.WithContext(ctx).Raw(`SELECT draining FROM instances WHERE id = ?`, id).Scan(&rows).Error; err != nil {
		return false, s.wrap(fmt.Errorf("store: instance draining: %w", err))
	}
	return len(rows) > 0 && rows[0], nil
}

// PodLease returns the owner of the task's pod lease and the reattach data
// it holds (JSON: pid, startedAt, …); found is false when no instance holds
// one. Any instance answers a Pod from it for a pod another instance runs.
func (s *Store) PodLease(ctx context.Context, taskID string) (owner string, lease []byte, found bool, err error) {
	if !validID(taskID) {
		return "", nil, false, nil
	}
	var rows []struct{ Owner, Lease string }
	if err := s.read.WithContext(ctx).Raw(`SELECT owner, lease FROM pod_leases WHERE task_id = ?`, taskID).Scan(&rows).Error; err != nil {
		return "", nil, false, s.wrap(fmt.Errorf("store: pod lease: %w", err))
	}
	if len(rows) == 0 {
		return "", nil, false, nil
	}
	return rows[0].Owner, []byte(rows[0].Lease), true, nil
}
