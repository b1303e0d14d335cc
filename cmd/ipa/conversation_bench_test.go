package main

// Answer latency: from the answerRequest mutation to the return of the
// runtime's Ask call (a real SDK runtime over go-plugin), on one server and
// across two instances on PostgreSQL, beside a bare taskEvents delivery of
// the same input_answered event in the same run. A measurement, not a
// pass/fail check: run with IPA_CONVERSATION_PERF=1 and -v.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
)

func TestConversationLatency(t *testing.T) {
	if os.Getenv("IPA_CONVERSATION_PERF") != "1" {
		t.Skip("a measurement: set IPA_CONVERSATION_PERF=1")
	}
	const rounds = 200
	dir := newPluginDir(t)
	buildChatty(t, dir)

	measure := func(t *testing.T, owner, answerer *server) {
		id := owner.createTask(t, map[string]any{"title": "latency", "runtime": "chatty", "autoStart": true,
			"runtimeConfig": map[string]any{"askLoop": rounds}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// The bare feed: taskEvents on the pod's owner, input_answered only.
		feed := subscribe(t, ctx, owner, fmt.Sprintf(`subscription { taskEvents(taskId: %q) { type data } }`, id))
		sent := make([]time.Time, rounds+1)
		delivered := make([]time.Duration, 0, rounds)
		for i := 1; i <= rounds; i++ {
			r := answerer.waitPending(t, id)
			sent[i] = time.Now()
			answerer.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "ok") { request { id } } }`, map[string]any{"r": r.ID}, nil)
			for got := false; !got; {
				select {
				case raw := <-feed:
					var m struct{ TaskEvents struct{ Type string } }
					_ = json.Unmarshal(raw, &m)
					if m.TaskEvents.Type == "input_answered" {
						delivered = append(delivered, time.Since(sent[i]))
						got = true
					}
				case <-ctx.Done():
					t.Fatal("no input_answered on taskEvents")
				}
			}
		}
		owner.waitLine(t, id, fmt.Sprintf("answered %d ", rounds))
		var returned []time.Duration
		for _, l := range owner.outputLines(t, id) {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "answered" {
				continue
			}
			i, _ := strconv.Atoi(f[1])
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			returned = append(returned, time.Unix(0, ns).Sub(sent[i]))
		}
		t.Logf("answer → Ask returns: %s", quantiles(returned))
		t.Logf("answer → taskEvents delivers input_answered: %s", quantiles(delivered))
	}

	t.Run("OneServer", func(t *testing.T) {
		s := newHome(t, "--plugin-dir", dir).start()
		measure(t, s, s)
	})
	t.Run("TwoInstancesPostgres", func(t *testing.T) {
		url := dbtest.URL(t, "postgres")
		a, b := newHome(t, "--plugin-dir", dir), newHome(t, "--plugin-dir", dir)
		a.db, b.db = url, url
		sa, sb := a.start(), b.start()
		measure(t, sa, sb)
	})
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", len(s), q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}
