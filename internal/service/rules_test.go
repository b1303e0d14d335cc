package service

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func ptr[T any](v T) *T { return &v }

// TestAuthorizationByRole calls every use case as no one and as each role
// below the one it needs: each is refused before anything is read or
// written, and the role it needs is allowed.
func TestAuthorizationByRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	task := f.create(t)
	tokens := NewTokenService(memTokens{}, nil, nil)
	feeds := NewFeedService(memFeed{})
	cases := []struct {
		name string
		need ipa.Role
		call func(ctx context.Context) error
	}{
		{"task", ipa.RoleViewer, func(ctx context.Context) error { _, err := f.tasks.Task(ctx, task.ID); return err }},
		{"tasks", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := f.tasks.ListTasks(ctx, ListTasksInput{First: 1})
			return err
		}},
		{"taskCount", ipa.RoleViewer, func(ctx context.Context) error { _, err := f.tasks.CountTasks(ctx, ipa.TaskFilter{}); return err }},
		{"runtimes", ipa.RoleViewer, func(ctx context.Context) error { _, err := f.tasks.Runtimes(ctx); return err }},
		{"events", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := f.tasks.TaskEvents(ctx, task.ID, 10, nil, nil)
			return err
		}},
		{"crashes", ipa.RoleViewer, func(ctx context.Context) error { _, err := f.podS.Crashes(ctx, task.ID, 5); return err }},
		{"activePods", ipa.RoleViewer, func(ctx context.Context) error { _, err := f.podS.ActivePods(ctx); return err }},
		{"viewer", ipa.RoleViewer, func(ctx context.Context) error { _, err := tokens.Viewer(ctx); return err }},
		{"createTask", ipa.RoleOperator, func(ctx context.Context) error {
			_, err := f.tasks.CreateTask(ctx, ipa.CreateTaskInput{Title: "x"})
			return err
		}},
		{"transitionPhase", ipa.RoleOperator, func(ctx context.Context) error {
			_, err := f.tasks.TransitionPhase(ctx, task.ID, ipa.PhasePlanning, nil, ptr(int64(-5)))
			return err
		}},
		{"startPod", ipa.RoleOperator, func(ctx context.Context) error {
			_, _, err := f.podS.StartPod(ctx, task.ID, ptr(int64(-5)))
			return err
		}},
		{"stopPod", ipa.RoleOperator, func(ctx context.Context) error {
			_, err := f.podS.StopPod(ctx, task.ID, nil, ptr(int64(-5)))
			return err
		}},
		{"restartPod", ipa.RoleOperator, func(ctx context.Context) error { _, err := f.podS.RestartPod(ctx, task.ID, ptr(int64(-5))); return err }},
		{"completeTask", ipa.RoleOperator, func(ctx context.Context) error {
			_, err := f.tasks.CompleteTask(ctx, task.ID, ptr(int64(-5)))
			return err
		}},
		{"cancelTask", ipa.RoleOperator, func(ctx context.Context) error {
			_, err := f.tasks.CancelTask(ctx, task.ID, "why", ptr(int64(-5)))
			return err
		}},
		{"apiTokens", ipa.RoleAdmin, func(ctx context.Context) error { _, err := tokens.Tokens(ctx); return err }},
		{"createToken", ipa.RoleAdmin, func(ctx context.Context) error {
			_, _, err := tokens.CreateToken(ctx, "x\x00", ipa.RoleViewer)
			return err
		}},
		{"revokeToken", ipa.RoleAdmin, func(ctx context.Context) error { _, err := tokens.RevokeToken(ctx, "x"); return err }},
		{"taskEvents subscription", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := feeds.TaskEventsSource(ctx, task.ID, nil)
			return err
		}},
		{"events subscription", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := feeds.EventsSource(ctx, ptr("not a position"), nil)
			return err
		}},
		{"taskEventsStream subscription", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := feeds.SubscribeTaskEventBatches(ctx, task.ID, nil, 0)
			return err
		}},
		{"eventsStream subscription", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := feeds.SubscribeEventBatches(ctx, nil, nil, 1001)
			return err
		}},
		{"taskChanged subscription", ipa.RoleViewer, func(ctx context.Context) error {
			_, err := feeds.SubscribeTaskChanged(ctx, ipa.TaskFilter{Statuses: []ipa.TaskStatus{"NOPE"}})
			return err
		}},
	}
	roles := []ipa.Role{ipa.RoleViewer, ipa.RoleOperator, ipa.RoleAdmin}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.log.journal)
			requireCode(t, c.call(context.Background()), ipa.EUNAUTHENTICATED, "")
			for _, r := range roles {
				err := c.call(as(r))
				if r.Allows(c.need) {
					// Allowed: whatever else it answers (some calls above
					// are built to fail validation afterwards, so no
					// fake is needed behind them), it is not refused.
					require.NotContains(t, []string{ipa.EUNAUTHENTICATED, ipa.EFORBIDDEN}, ipa.ErrorCode(err), "%s as %s: %v", c.name, r, err)
					continue
				}
				requireCode(t, err, ipa.EFORBIDDEN, "")
			}
			if c.need != ipa.RoleOperator || c.name == "createTask" {
				return
			}
			// Refused calls of writers wrote nothing: only the allowed
			// ones (which fail their version check) ran.
			require.Equal(t, before, len(f.log.journal), "a refused or conflicting call wrote: %v", f.log.journal[before:])
		})
	}
}

// TestPhaseRules moves a task through the phase rules: one step forward,
// one step back for rework, nothing else; closed tasks never move.
func TestPhaseRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := as(ipa.RoleOperator)
	task := f.create(t)
	move := func(to ipa.Phase) error {
		_, err := f.tasks.TransitionPhase(ctx, task.ID, to, ptr("  why  "), nil)
		return err
	}
	t.Run("OneStepForward", func(t *testing.T) {
		require.NoError(t, move(ipa.PhasePlanning))
		require.NoError(t, move(ipa.PhaseDevelopment))
	})
	t.Run("SkipRefused", func(t *testing.T) {
		requireCode(t, move(ipa.PhaseSpecClarification), ipa.ECONFLICT, ipa.ReasonInvalidTransition)
	})
	t.Run("ReworkOneBack", func(t *testing.T) {
		require.NoError(t, move(ipa.PhasePlanning))
	})
	t.Run("FinalPhasesOnlyByClosing", func(t *testing.T) {
		requireCode(t, move(ipa.PhaseCompleted), ipa.ECONFLICT, ipa.ReasonInvalidTransition)
		requireCode(t, move(ipa.PhaseCancelled), ipa.ECONFLICT, ipa.ReasonInvalidTransition)
	})
	t.Run("UnknownPhase", func(t *testing.T) {
		requireCode(t, move("NOWHERE"), ipa.EINVALID, ipa.ReasonInvalidArgument)
	})
	t.Run("NoteIsTrimmedAndRecorded", func(t *testing.T) {
		evs, err := f.log.ReadEvents(ctx, ipa.EventQuery{TaskID: task.ID, Types: []string{ipa.EventPhaseChanged}})
		require.NoError(t, err)
		require.Len(t, evs, 3)
		require.JSONEq(t, `{"from":"DEVELOPMENT","to":"PLANNING","note":"why"}`, string(evs[2].Data))
		require.Equal(t, "someone", evs[2].ActorID)
	})
	t.Run("ExpectedVersion", func(t *testing.T) {
		_, err := f.tasks.TransitionPhase(ctx, task.ID, ipa.PhaseDevelopment, nil, ptr(int64(1)))
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
	})
	t.Run("ClosedNeverMoves", func(t *testing.T) {
		_, err := f.tasks.CompleteTask(ctx, task.ID, nil)
		require.NoError(t, err)
		requireCode(t, move(ipa.PhaseDevelopment), ipa.ECONFLICT, ipa.ReasonAlreadyCompleted)
	})
}

// TestCloseRules covers completeTask and cancelTask: a running pod is stopped
// before the closing event, then forgotten; closed tasks stay closed; a
// cancel needs a reason; a stale expected version changes nothing.
func TestCloseRules(t *testing.T) {
	t.Parallel()
	ctx := as(ipa.RoleOperator)
	t.Run("CompleteStopsThePodFirst", func(t *testing.T) {
		f := newFixture(t)
		task := f.create(t)
		_, started, err := f.podS.StartPod(ctx, task.ID, nil)
		require.NoError(t, err)
		require.True(t, started)
		f.log.journal = nil
		done, err := f.tasks.CompleteTask(ctx, task.ID, nil)
		require.NoError(t, err)
		require.Equal(t, ipa.StatusCompleted, done.Status)
		require.Equal(t, ipa.PhaseCompleted, done.Phase)
		require.Equal(t, ipa.PodStopped, done.PodState)
		require.Equal(t, []string{"stop task completed", "append pod_stopped", "append task_completed", "stop task completed", "forget " + task.ID}, f.log.journal)
	})
	t.Run("CancelNeedsAReason", func(t *testing.T) {
		f := newFixture(t)
		task := f.create(t)
		_, err := f.tasks.CancelTask(ctx, task.ID, "   ", nil)
		requireCode(t, err, ipa.EINVALID, ipa.ReasonMissingReason)
		_, err = f.tasks.CancelTask(ctx, task.ID, strings.Repeat("x", ipa.MaxReasonChars+1), nil)
		requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidArgument)
	})
	t.Run("CancelRecordsReasonAndPhase", func(t *testing.T) {
		f := newFixture(t)
		task := f.create(t)
		c, err := f.tasks.CancelTask(ctx, task.ID, " superseded ", nil)
		require.NoError(t, err)
		require.Equal(t, ipa.StatusCancelled, c.Status)
		evs, _ := f.log.ReadEvents(ctx, ipa.EventQuery{TaskID: task.ID, Types: []string{ipa.EventTaskCancelled}})
		require.Len(t, evs, 1)
		require.JSONEq(t, `{"reason":"superseded","phase":"SPEC_CLARIFICATION"}`, string(evs[0].Data))
	})
	t.Run("ClosedStaysClosed", func(t *testing.T) {
		f := newFixture(t)
		task := f.create(t)
		_, err := f.tasks.CancelTask(ctx, task.ID, "no", nil)
		require.NoError(t, err)
		_, err = f.tasks.CompleteTask(ctx, task.ID, nil)
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonAlreadyCancelled)
		_, err = f.tasks.CancelTask(ctx, task.ID, "again", nil)
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonAlreadyCancelled)
		_, _, err = f.podS.StartPod(ctx, task.ID, nil)
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonAlreadyCancelled)
	})
	t.Run("StaleVersionTouchesNothing", func(t *testing.T) {
		f := newFixture(t)
		task := f.create(t)
		_, _, err := f.podS.StartPod(ctx, task.ID, nil)
		require.NoError(t, err)
		f.log.journal = nil
		_, err = f.tasks.CompleteTask(ctx, task.ID, ptr(task.Version))
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
		require.Empty(t, f.log.journal, "a refused close stopped the pod or wrote")
	})
	t.Run("MissingTask", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.tasks.CompleteTask(ctx, "no-such-task", nil)
		requireCode(t, err, ipa.ENOTFOUND, "")
	})
}

// TestCreateRules covers validation and autoStart.
func TestCreateRules(t *testing.T) {
	t.Parallel()
	ctx := as(ipa.RoleOperator)
	f := newFixture(t)
	bad := []struct {
		name   string
		in     ipa.CreateTaskInput
		reason string
	}{
		{"BlankTitle", ipa.CreateTaskInput{Title: "   "}, ipa.ReasonInvalidTitle},
		{"LongTitle", ipa.CreateTaskInput{Title: strings.Repeat("é", ipa.MaxTitleChars+1)}, ipa.ReasonInvalidTitle},
		{"UnknownRuntime", ipa.CreateTaskInput{Title: "x", Runtime: ptr("nope")}, ipa.ReasonInvalidArgument},
		{"RuntimeConfigRefused", ipa.CreateTaskInput{Title: "x", Runtime: ptr("picky"), RuntimeConfig: []byte(`{"ok":false}`)}, ipa.ReasonInvalidArgument},
		{"MetadataNotObject", ipa.CreateTaskInput{Title: "x", Metadata: []byte(`[1]`)}, ipa.ReasonInvalidArgument},
		{"MetadataNUL", ipa.CreateTaskInput{Title: "x", Metadata: []byte(`{"a":"\u0000"}`)}, ipa.ReasonInvalidArgument},
		{"BadPolicy", ipa.CreateTaskInput{Title: "x", RestartPolicy: &ipa.RestartPolicyInput{MaxAttempts: ptr(-1)}}, ipa.ReasonInvalidArgument},
		{"EmptyIdempotencyKey", ipa.CreateTaskInput{Title: "x", IdempotencyKey: ptr("")}, ipa.ReasonInvalidArgument},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.tasks.CreateTask(ctx, c.in)
			requireCode(t, err, ipa.EINVALID, c.reason)
		})
	}
	require.Empty(t, f.log.tasks, "a refused create wrote a task")

	t.Run("Defaults", func(t *testing.T) {
		task, err := f.tasks.CreateTask(ctx, ipa.CreateTaskInput{Title: "  padded  "})
		require.NoError(t, err)
		require.Equal(t, "padded", task.Title)
		require.Equal(t, DefaultRuntime, task.Runtime)
		require.Equal(t, ipa.DefaultRestartPolicy(), task.RestartPolicy)
		require.Equal(t, "someone", task.CreatedBy)
	})
	t.Run("AutoStartNamesTheCreateAsCause", func(t *testing.T) {
		f.log.journal = nil
		task, err := f.tasks.CreateTask(ctx, ipa.CreateTaskInput{Title: "go", AutoStart: ptr(true)})
		require.NoError(t, err)
		require.Equal(t, ipa.StatusActive, task.Status)
		created, _ := f.log.ReadEvents(ctx, ipa.EventQuery{TaskID: task.ID, Types: []string{ipa.EventTaskCreated}})
		require.Equal(t, []string{"append task_created", "start " + task.ID + " trigger=auto_start cause=" + created[0].ID, "append pod_started"}, f.log.journal)
	})
	t.Run("AutoStartFailureReturnsTheTaskWithItsCrash", func(t *testing.T) {
		g := newFixture(t)
		g.pods.startErr = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "no")
		task, err := g.tasks.CreateTask(ctx, ipa.CreateTaskInput{Title: "go", AutoStart: ptr(true)})
		require.NoError(t, err, "the task is committed: a failed start must not look like a failed create")
		require.Contains(t, g.log.tasks, task.ID)
		require.Len(t, g.log.tasks, 1)
		require.Equal(t, ipa.PodCrashed, task.PodState, "the returned task is read after the crash was recorded")
		require.Equal(t, ipa.PodCrashed, g.podS.Pod(context.Background(), task).State)
		crashes, err := g.podS.Crashes(ctx, task.ID, 10)
		require.NoError(t, err)
		require.Len(t, crashes, 1)
		require.Equal(t, ipa.CrashStartFailed, crashes[0].Reason)
		require.Equal(t, "The runtime refused to start.", *crashes[0].MessageText())
	})
}

// TestPodRules covers the pod use cases over a fake supervisor.
func TestPodRules(t *testing.T) {
	t.Parallel()
	ctx := as(ipa.RoleOperator)
	f := newFixture(t)
	task := f.create(t)
	t.Run("StopWhenNothingRuns", func(t *testing.T) {
		_, err := f.podS.StopPod(ctx, task.ID, nil, nil)
		requireCode(t, err, ipa.ECONFLICT, ipa.ReasonNotRunning)
	})
	t.Run("StartIsIdempotent", func(t *testing.T) {
		_, started, err := f.podS.StartPod(ctx, task.ID, nil)
		require.NoError(t, err)
		require.True(t, started)
		_, started, err = f.podS.StartPod(ctx, task.ID, nil)
		require.NoError(t, err)
		require.False(t, started)
	})
	t.Run("ViewPrefersTheSupervisor", func(t *testing.T) {
		cur, _ := f.log.GetTask(ctx, task.ID)
		v := f.podS.Pod(context.Background(), cur)
		require.Equal(t, ipa.PodRunning, v.State)
		require.Equal(t, 4242, *v.PID)
		v = f.podS.Pod(context.Background(), &ipa.Task{ID: "unknown-to-the-supervisor", PodState: ipa.PodCrashed})
		require.Equal(t, ipa.PodCrashed, v.State)
		require.Nil(t, v.PID)
	})
	t.Run("StopWithDefaultReason", func(t *testing.T) {
		f.log.journal = nil
		_, err := f.podS.StopPod(ctx, task.ID, ptr("   "), nil)
		require.NoError(t, err)
		require.Equal(t, "stop stopped by request", f.log.journal[0])
	})
	t.Run("StartAndRestartAreManual", func(t *testing.T) {
		g := newFixture(t)
		other := g.create(t)
		g.log.journal = nil
		_, _, err := g.podS.StartPod(ctx, other.ID, nil)
		require.NoError(t, err)
		_, err = g.podS.RestartPod(ctx, other.ID, nil)
		require.NoError(t, err)
		var starts []string
		for _, j := range g.log.journal {
			if strings.HasPrefix(j, "start ") {
				starts = append(starts, j)
			}
		}
		require.Equal(t, []string{"start " + other.ID + " trigger=manual cause=", "start " + other.ID + " trigger=manual cause="}, starts)
	})
	t.Run("ActivePodsLeavesCrashedOut", func(t *testing.T) {
		g := newFixture(t)
		running, crashed := g.create(t), g.create(t)
		_, _, err := g.podS.StartPod(ctx, running.ID, nil)
		require.NoError(t, err)
		g.pods.startErr = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "no")
		_, _, err = g.podS.StartPod(ctx, crashed.ID, nil)
		requireCode(t, err, ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed)
		active, err := g.podS.ActivePods(ctx)
		require.NoError(t, err)
		require.Len(t, active, 1)
		require.Equal(t, running.ID, active[0].ID)
	})
	t.Run("LostPodsAreCrashes", func(t *testing.T) {
		g := newFixture(t)
		other := g.create(t)
		g.pods.recordData(other.ID, ipa.EventPodCrashed, ipa.PodCrashedData{Reason: ipa.CrashSignal, Signal: "SIGKILL", UptimeMs: 7})
		g.pods.recordData(other.ID, ipa.EventPodLost, ipa.PodLostData{Reason: ipa.LostProcessGone, PID: 12})
		crashes, err := g.podS.Crashes(ctx, other.ID, 10)
		require.NoError(t, err)
		require.Len(t, crashes, 2)
		require.Equal(t, ipa.CrashLost, crashes[0].Reason, "newest first")
		require.NotEmpty(t, crashes[0].Message)
		require.Equal(t, ipa.CrashSignal, crashes[1].Reason)
		require.Nil(t, crashes[1].MessageText())
		last, err := g.podS.Crashes(ctx, other.ID, 1)
		require.NoError(t, err)
		require.Equal(t, []ipa.PodCrash{crashes[0]}, last)
	})
	t.Run("CrashesBounds", func(t *testing.T) {
		_, err := f.podS.Crashes(ctx, task.ID, 0)
		requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidArgument)
		_, err = f.podS.Crashes(ctx, task.ID, MaxPageSize+1)
		requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidArgument)
	})
}

// TestRuntimeRole: a runtime that needs ADMIN (exec by default) refuses
// operators on create, start and restart, and lets admins through; other
// runtimes stay open to operators.
func TestRuntimeRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	op, admin := as(ipa.RoleOperator), as(ipa.RoleAdmin)
	_, err := f.tasks.CreateTask(op, ipa.CreateTaskInput{Title: "rm -rf", Runtime: ptr("shell")})
	requireCode(t, err, ipa.EFORBIDDEN, "")
	require.Contains(t, err.Error(), "shell runtime needs role ADMIN")
	require.Empty(t, f.log.tasks, "a refused create wrote a task")

	task, err := f.tasks.CreateTask(admin, ipa.CreateTaskInput{Title: "ls", Runtime: ptr("shell")})
	require.NoError(t, err)
	_, _, err = f.podS.StartPod(op, task.ID, nil)
	requireCode(t, err, ipa.EFORBIDDEN, "")
	_, err = f.podS.RestartPod(op, task.ID, nil)
	requireCode(t, err, ipa.EFORBIDDEN, "")
	require.Empty(t, f.pods.running, "a refused start ran a pod")
	_, started, err := f.podS.StartPod(admin, task.ID, nil)
	require.NoError(t, err)
	require.True(t, started)
	// Stopping, moving and closing are the operator's as before.
	_, err = f.podS.StopPod(op, task.ID, nil, nil)
	require.NoError(t, err)
	_, err = f.tasks.CancelTask(op, task.ID, "enough", nil)
	require.NoError(t, err)

	_, err = f.tasks.CreateTask(op, ipa.CreateTaskInput{Title: "walk", Runtime: ptr("demo")})
	require.NoError(t, err)
}
