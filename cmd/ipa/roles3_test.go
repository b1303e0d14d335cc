package main

// The roles of the scheduling and pause mutations, through the real binary
// with real tokens: setConcurrencyLimit is the admin's alone (an operator
// or a viewer gets FORBIDDEN and changes nothing), pausePod and resumePod
// are the operator's (a viewer gets FORBIDDEN), and anyone may read the
// limits.

import (
	"testing"
	"time"
)

func TestSchedulingAndPauseRoles(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()

	// The anonymous local door mints the first (admin) token; from then on
	// every request carries one.
	var admin, operator, viewer struct{ CreateToken struct{ Secret string } }
	s.must(t, `mutation { createToken(actorId: "root", role: ADMIN) { secret } }`, nil, &admin)
	h.token = admin.CreateToken.Secret
	s.must(t, `mutation { createToken(actorId: "otto", role: OPERATOR) { secret } }`, nil, &operator)
	s.must(t, `mutation { createToken(actorId: "vic", role: VIEWER) { secret } }`, nil, &viewer)
	as := func(secret string) { h.token = secret }

	const setLimit = `mutation($l: Int) { setConcurrencyLimit(key: "global", limit: $l) { key limit } }`
	const limits = `{ concurrencyLimits { key limit } }`
	type limitsOut struct {
		ConcurrencyLimits []struct {
			Key   string
			Limit *int
		}
	}
	for _, who := range []struct{ name, secret string }{{"operator", operator.CreateToken.Secret}, {"viewer", viewer.CreateToken.Secret}} {
		as(who.secret)
		if e := s.mustFail(t, setLimit, map[string]any{"l": 5}, "FORBIDDEN", ""); e.Message == "" {
			t.Fatalf("%s: FORBIDDEN without a message", who.name)
		}
		var out limitsOut
		s.must(t, limits, nil, &out)
		if len(out.ConcurrencyLimits) != 0 {
			t.Fatalf("%s's refused setConcurrencyLimit left limits %+v", who.name, out.ConcurrencyLimits)
		}
	}
	as(admin.CreateToken.Secret)
	s.must(t, setLimit, map[string]any{"l": 5}, nil)
	as(operator.CreateToken.Secret)
	s.mustFail(t, setLimit, map[string]any{"l": nil}, "FORBIDDEN", "")
	var out limitsOut
	s.must(t, limits, nil, &out)
	if len(out.ConcurrencyLimits) != 1 || out.ConcurrencyLimits[0].Key != "global" || out.ConcurrencyLimits[0].Limit == nil || *out.ConcurrencyLimits[0].Limit != 5 {
		t.Fatalf("limits after the admin's set and the operator's refused removal: %+v", out.ConcurrencyLimits)
	}

	// An exec pod (the admin's runtime by default) that the operator pauses
	// and resumes and the viewer may not touch.
	as(admin.CreateToken.Secret)
	id := s.createTask(t, map[string]any{"runtime": "exec", "runtimeConfig": map[string]any{
		"command": []string{"sh", "-c", "while true; do sleep 1; done"}, "env": tagEnv(h)}})
	s.startPod(t, id)
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 30*time.Second)
	const pause = `mutation($id: ID!) { pausePod(taskId: $id) { task { pod { state } } } }`
	const resume = `mutation($id: ID!) { resumePod(taskId: $id) { task { pod { state } } } }`
	vars := map[string]any{"id": id}
	type podOut struct {
		Task struct{ Pod struct{ State string } }
	}

	as(viewer.CreateToken.Secret)
	s.mustFail(t, pause, vars, "FORBIDDEN", "")
	as(operator.CreateToken.Secret)
	var p struct{ PausePod podOut }
	s.must(t, pause, vars, &p)
	if p.PausePod.Task.Pod.State != "PAUSED" {
		t.Fatalf("operator's pausePod: state %s", p.PausePod.Task.Pod.State)
	}
	as(viewer.CreateToken.Secret)
	s.mustFail(t, resume, vars, "FORBIDDEN", "")
	as(operator.CreateToken.Secret)
	var r struct{ ResumePod podOut }
	s.must(t, resume, vars, &r)
	if r.ResumePod.Task.Pod.State != "RUNNING" {
		t.Fatalf("operator's resumePod: state %s", r.ResumePod.Task.Pod.State)
	}
	if n := len(s.events(t, id, "pod_paused")); n != 1 {
		t.Fatalf("%d pod_paused events, want 1 (the viewer's refused pause wrote none)", n)
	}
	if n := len(s.events(t, id, "pod_resumed")); n != 1 {
		t.Fatalf("%d pod_resumed events, want 1", n)
	}
}
