package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestLinearizability records concurrent histories of task operations sent
// to three `ipa serve` on one PostgreSQL database — reads, updates and phase
// changes with and without expectedVersion, pod starts and stops, closes —
// while the servers are killed -9, paused (SIGSTOP past the lease TTL) and
// cut, stalled or slowed on their own link to the database, and checks with
// porcupine that each task's history is linearizable against the model in
// linmodel_test.go. On a violation it writes porcupine's visualisation to
// $IPA_TEST_ARTIFACTS (testdata/linearizability/ by default) and prints the
// offending task's history.
//
// One round of faults by default (about 20 s); longer with
//
//	IPA_LINEARIZABILITY_DURATION=5m go test -count=1 -run TestLinearizability -v ./cmd/ipa/
//
// (a new round, with new tasks, until the duration has passed).
//
// completeTask and cancelTask name the version their client last saw
// whenever it saw one: a close is atomic with respect to it (it commits only
// on that version plus its own stop's pod_stopped), which is what this
// checks hardest.
func TestLinearizability(t *testing.T) {
	var duration time.Duration
	if v := os.Getenv("IPA_LINEARIZABILITY_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("IPA_LINEARIZABILITY_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	pc := newProxiedCluster(t)
	ids := []string{"A", "B", "C"}
	lc := &linCluster{pc: pc, live: map[string]*server{}}
	for _, id := range ids {
		lc.live[id] = pc.start(id)
	}
	// Whatever happens, no server stays stopped and no link broken: the
	// cleanup must be able to end them.
	defer func() {
		for _, id := range ids {
			pc.proxies[id].Heal()
			if s := pc.srv[id]; s != nil {
				s.kill(syscall.SIGCONT)
			}
		}
	}()

	rec := &linRecorder{base: time.Now(), unknownCodes: map[string]int{}}
	began := time.Now()
	for round := 0; ; round++ {
		lc.round(t, rec, round, ids)
		if time.Since(began) >= duration {
			t.Logf("%d round(s) in %s", round+1, time.Since(began).Round(time.Second))
			break
		}
	}
	lc.checkStreams(t, rec)
	rec.check(t)
}

// linCluster is the servers clients may send to: an instance killed -9 is
// out of the set until it serves again.
type linCluster struct {
	pc   *proxiedCluster
	mu   sync.Mutex
	live map[string]*server
}

func (lc *linCluster) pick(rng *rand.Rand) *server {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	keys := make([]string, 0, len(lc.live))
	for k := range lc.live {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	return lc.live[keys[rng.IntN(len(keys))]]
}

func (lc *linCluster) setLive(id string, s *server) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if s == nil {
		delete(lc.live, id)
	} else {
		lc.live[id] = s
	}
}

// linTask is one task of a round.
type linTask struct {
	id   string
	pods bool
}

// round creates fresh tasks (two without pods, two with auto-restarting
// pods), runs three clients on each while one server is killed -9 and
// started again, another paused past the TTL, then one cut from the
// database, another's link stalled and the third's slowed, all past the
// TTL; clients close the tasks at the end.
func (lc *linCluster) round(t *testing.T, rec *linRecorder, round int, ids []string) {
	t.Helper()
	pc := lc.pc
	var tasks []*linTask
	for i := range 4 {
		tk := &linTask{pods: i >= 2}
		title := fmt.Sprintf("lin r%d t%d", round, i)
		in := map[string]any{"title": title}
		if tk.pods {
			in = autoRestartTask(title)
		}
		s := pc.srv[ids[i%len(ids)]]
		call := rec.now()
		var out struct {
			CreateTask struct {
				Task struct {
					ID      string
					Version int64
				}
			} `json:"createTask"`
		}
		s.must(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id version } } }`, map[string]any{"in": in}, &out)
		tk.id = out.CreateTask.Task.ID
		rec.add(linRecord{client: 0, in: linInput{Kind: linCreate, Task: tk.id, Pods: tk.pods, Title: title},
			call: call, ret: rec.now(), out: linOutput{Version: out.CreateTask.Task.Version}})
		tasks = append(tasks, tk)
	}

	var stop, closing atomic.Bool
	var wg sync.WaitGroup
	const clientsPerTask = 3
	for ti, tk := range tasks {
		for c := range clientsPerTask {
			w := &linWorker{lc: lc, rec: rec, task: tk, client: 1 + ti*clientsPerTask + c, round: round,
				rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(ti*clientsPerTask+c))),
				phase: "SPEC_CLARIFICATION"}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(&stop, &closing)
			}()
		}
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	at := func(what string) {
		t.Logf("round %d, %s: %s", round, time.Since(rec.base).Round(time.Millisecond), what)
	}
	killed, paused, third := ids[round%3], ids[(round+1)%3], ids[(round+2)%3]

	time.Sleep(time.Second)
	at("kill -9 " + killed)
	lc.setLive(killed, nil)
	pc.srv[killed].crash(t)
	time.Sleep(time.Second)
	lc.setLive(killed, pc.restart(killed))
	at(killed + " serving again")

	time.Sleep(time.Second)
	at("SIGSTOP " + paused)
	pc.srv[paused].kill(syscall.SIGSTOP)
	time.Sleep(testTTL + 500*time.Millisecond)
	pc.srv[paused].kill(syscall.SIGCONT)
	at("SIGCONT " + paused)

	time.Sleep(time.Second)
	// One link cut, another stalled (which one alternates by round), the
	// third slowed.
	cutID, stallID := third, killed
	if round%2 == 1 {
		cutID, stallID = killed, third
	}
	at(fmt.Sprintf("%s cut from the database, %s's link stalled, %s's slowed", cutID, stallID, paused))
	pc.proxies[cutID].Cut()
	pc.proxies[stallID].Stall()
	pc.proxies[paused].Delay(30 * time.Millisecond)
	time.Sleep(testTTL + time.Second)
	for _, id := range ids {
		pc.proxies[id].Heal()
	}
	at("links healed")

	time.Sleep(time.Second)
	closing.Store(true)
	at("closing")
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	at("round over")
	rec.mu.Lock()
	rec.tasks = append(rec.tasks, tasks...)
	rec.mu.Unlock()
}

// linWorker is one client of one task.
type linWorker struct {
	lc     *linCluster
	rec    *linRecorder
	task   *linTask
	client int
	round  int
	rng    *rand.Rand
	seq    int
	// What this client last saw of the task: expectedVersion and phase
	// targets come from it, as a real client's would.
	version int64
	phase   string
}

func (w *linWorker) run(stop, closing *atomic.Bool) {
	for !stop.Load() {
		s := w.lc.pick(w.rng)
		if s == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		w.one(s, closing.Load())
		time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
	}
}

// one sends one operation, chosen at random, and records it.
func (w *linWorker) one(s *server, closing bool) {
	in := linInput{Task: w.task.id, Pods: w.task.pods}
	if w.rng.IntN(2) == 0 && w.version > 0 {
		in.Expect = w.version
	}
	p := w.rng.IntN(100)
	switch {
	case closing && p < 4:
		in.Kind = linComplete
		if p%2 == 1 {
			in.Kind = linCancel
		}
		in.Expect = w.version // 0 (none) when the client saw no version since its last doubt
		if w.task.pods {
			// A close may commit on its expected version plus its own
			// pod_stopped, which a read can observe first; the model
			// knows pod versions only as lower bounds and cannot tell the
			// close's own stop from another, so on pod tasks closes name
			// no version (pod-less tasks check the atomic close exactly).
			in.Expect = 0
		}
	case p < 35:
		in.Kind, in.Expect = linRead, 0
	case p < 60:
		in.Kind = linUpdate
		w.seq++
		val := fmt.Sprintf("r%d-c%d-%d", w.round, w.client, w.seq)
		switch w.rng.IntN(3) {
		case 0:
			in.Title = val
		case 1:
			in.Label = val
		default:
			in.Title, in.Label = val, val
		}
	case p < 80 || !w.task.pods:
		in.Kind = linPhase
		in.Phase = w.phaseTarget()
	case p < 90:
		in.Kind = linStart
	default:
		in.Kind = linStop
	}

	q, vars := linQuery(in)
	call := w.rec.now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	data, errs, err := s.post(ctx, q, vars)
	cancel()
	ret := w.rec.now()
	var out linOutput
	switch {
	case err != nil && errors.Is(err, syscall.ECONNREFUSED):
		return // never reached a server: it did nothing
	case err != nil:
		out.Unknown = true
		w.rec.unknown(string(in.Kind) + ": " + linErrClass(err))
	case len(errs) > 0:
		switch r := errs[0].Extensions.Reason; r {
		case "VERSION_CONFLICT", "ALREADY_COMPLETED", "ALREADY_CANCELLED", "INVALID_TRANSITION", "NOT_RUNNING":
			out.Reason = r
		default:
			// A store or internal error may come after the commit: the
			// operation may have happened.
			out.Unknown = true
			w.rec.unknown(string(in.Kind) + ": " + errs[0].Extensions.Code + "/" + r)
		}
	default:
		if e := decodeLinOutput(in, data, &out); e != nil {
			out.Unknown = true
			w.rec.unknown(string(in.Kind) + ": decode: " + e.Error())
		}
	}
	if in.Kind == linRead && (out.Unknown || out.Reason != "") {
		return // a read that did not answer says nothing
	}
	if out.Reason == "VERSION_CONFLICT" {
		w.version = 0 // as a real client would, it reads again before it names a version
	}
	if !out.Unknown && out.Reason == "" {
		if out.Version > 0 {
			w.version = out.Version
		}
		if in.Kind == linRead {
			w.phase = out.Phase
		}
		if in.Kind == linPhase {
			w.phase = in.Phase
		}
	}
	w.rec.add(linRecord{client: w.client, in: in, call: call, ret: ret, out: out})
}

// phaseTarget is usually a legal step from the last phase seen, sometimes
// an illegal one.
func (w *linWorker) phaseTarget() string {
	i := max(linPhaseIdx(w.phase), 0)
	switch r := w.rng.IntN(10); {
	case r == 0:
		return linPhases[(i+2)%len(linPhases)]
	case r < 5 && i > 0, i == len(linPhases)-1:
		return linPhases[i-1]
	default:
		return linPhases[i+1]
	}
}

func linErrClass(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "EOF"
	}
	return "other"
}

func linQuery(in linInput) (string, map[string]any) {
	vars := map[string]any{"id": in.Task}
	if in.Expect != 0 {
		vars["e"] = in.Expect
	}
	switch in.Kind {
	case linRead:
		return `query($id: ID!) { task(id: $id) { version title labels phase status } }`, vars
	case linUpdate:
		input := map[string]any{}
		if in.Title != "" {
			input["title"] = in.Title
		}
		if in.Label != "" {
			input["labels"] = map[string]string{"w": in.Label}
		}
		vars["in"] = input
		return `mutation($id: ID!, $in: UpdateTaskInput!, $e: Int) { op: updateTask(taskId: $id, input: $in, expectedVersion: $e) { task { version } } }`, vars
	case linPhase:
		vars["to"] = in.Phase
		return `mutation($id: ID!, $to: TaskPhase!, $e: Int) { op: transitionPhase(taskId: $id, to: $to, expectedVersion: $e) { task { version } } }`, vars
	case linComplete:
		return `mutation($id: ID!, $e: Int) { op: completeTask(taskId: $id, expectedVersion: $e) { task { version } } }`, vars
	case linCancel:
		return `mutation($id: ID!, $e: Int) { op: cancelTask(taskId: $id, reason: "linearizability check", expectedVersion: $e) { task { version } } }`, vars
	case linStart:
		return `mutation($id: ID!, $e: Int) { op: startPod(taskId: $id, expectedVersion: $e) { started } }`, vars
	case linStop:
		return `mutation($id: ID!, $e: Int) { op: stopPod(taskId: $id, expectedVersion: $e) { task { id } } }`, vars
	}
	panic("unknown kind " + in.Kind)
}

func decodeLinOutput(in linInput, data json.RawMessage, out *linOutput) error {
	if in.Kind == linRead {
		var d struct {
			Task *struct {
				Version int64
				Title   string
				Labels  map[string]string
				Phase   string
				Status  string
			}
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return err
		}
		if d.Task == nil {
			out.Status = "MISSING" // no such task: the model refuses it
			return nil
		}
		out.Version, out.Title, out.Label, out.Phase, out.Status = d.Task.Version, d.Task.Title, d.Task.Labels["w"], d.Task.Phase, d.Task.Status
		return nil
	}
	var d struct {
		Op struct {
			Task struct{ Version int64 }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	switch in.Kind {
	case linUpdate, linPhase, linComplete, linCancel:
		if d.Op.Task.Version <= 0 {
			return fmt.Errorf("no version in %s", data)
		}
		out.Version = d.Op.Task.Version
	}
	return nil
}

// linRecord is one operation as sent and answered.
type linRecord struct {
	client    int
	in        linInput
	call, ret int64
	out       linOutput
}

type linRecorder struct {
	base         time.Time
	mu           sync.Mutex
	records      []linRecord
	tasks        []*linTask
	unknownCodes map[string]int
}

func (r *linRecorder) now() int64 { return int64(time.Since(r.base)) }

func (r *linRecorder) add(rec linRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
}

func (r *linRecorder) unknown(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknownCodes[why]++
}

// operations is the history for porcupine: an operation whose outcome is
// unknown returns at the end of the history, so it may take effect at any
// point after its call.
func (r *linRecorder) operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var end int64
	for _, rec := range r.records {
		end = max(end, rec.ret)
	}
	ops := make([]porcupine.Operation, 0, len(r.records))
	for _, rec := range r.records {
		ret := rec.ret
		if rec.out.Unknown {
			ret = end + 1
		}
		ops = append(ops, porcupine.Operation{ClientId: rec.client, Input: rec.in, Call: rec.call, Output: rec.out, Return: ret})
	}
	return ops
}

func (r *linRecorder) check(t *testing.T) {
	t.Helper()
	ops := r.operations()
	kinds := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		outcome := "ok"
		switch {
		case out.Unknown:
			outcome = "unknown"
		case out.Reason != "":
			outcome = out.Reason
		}
		kinds[fmt.Sprintf("%s→%s", in.Kind, outcome)]++
	}
	t.Logf("%d operations: %v; unknown outcomes by cause: %v", len(ops), kinds, r.unknownCodes)
	for _, need := range []string{"read→ok", "updateTask→ok", "transitionPhase→ok", "updateTask→VERSION_CONFLICT"} {
		if kinds[need] == 0 {
			t.Errorf("no %s in the history: the workload proves too little", need)
		}
	}

	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, ops, 2*time.Minute)
	t.Logf("porcupine: %s in %s", res, time.Since(began).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		t.Errorf("porcupine could not decide within its time limit (%d operations)", len(ops))
	case porcupine.Illegal:
		t.Errorf("the history is not linearizable")
	}
	r.explain(t, ops)
	dir := os.Getenv("IPA_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "linearizability")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.html", t.Name(), time.Now().UTC().Format("20060102T150405")))
	if err := porcupine.VisualizePath(linModel, info, path); err != nil {
		t.Fatalf("visualize: %v", err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("porcupine's visualisation: %s", abs)
}

// explain prints, for each task whose history fails on its own, where it
// fails: the state after the longest prefix porcupine could linearize, the
// last operations of that prefix, and the first operations to return that
// fit nowhere after it (one of them is the culprit, or what it contradicts).
func (r *linRecorder) explain(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	single := linModel
	single.Partition, single.PartitionEvent = nil, nil
	line := func(op porcupine.Operation) string {
		ret := fmt.Sprintf("%9.3fs", float64(op.Return)/1e9)
		if op.Output.(linOutput).Unknown {
			ret = "  (never)"
		}
		return fmt.Sprintf("  client %2d  %9.3fs → %s  %s\n", op.ClientId, float64(op.Call)/1e9, ret,
			linModel.DescribeOperation(op.Input, op.Output))
	}
	type key struct {
		client int
		call   int64
	}
	for _, part := range linModel.Partition(ops) {
		res, info := porcupine.CheckOperationsVerbose(single, part, time.Minute)
		if res == porcupine.Ok {
			continue
		}
		var best []porcupine.Operation
		for _, lin := range info.PartialLinearizationsOperations()[0] {
			if len(lin) > len(best) {
				best = lin
			}
		}
		states := []any{linState{}}
		done := map[key]bool{}
		for _, op := range best {
			var next []any
			for _, st := range states {
				next = append(next, linStep(st, op.Input, op.Output)...)
			}
			states = next
			done[key{op.ClientId, op.Call}] = true
		}
		var b strings.Builder
		seen := map[linState]bool{}
		for _, st := range states {
			if !seen[st.(linState)] {
				seen[st.(linState)] = true
				fmt.Fprintf(&b, "  state after it: %s\n", linModel.DescribeState([]any{st}))
			}
		}
		b.WriteString("  its last operations:\n")
		for _, op := range best[max(0, len(best)-6):] {
			b.WriteString(line(op))
		}
		var pending []porcupine.Operation
		for _, op := range part {
			if !done[key{op.ClientId, op.Call}] {
				pending = append(pending, op)
			}
		}
		sort.Slice(pending, func(i, j int) bool { return pending[i].Return < pending[j].Return })
		b.WriteString("  the first operations to return that fit nowhere after it:\n")
		for _, op := range pending[:min(8, len(pending))] {
			b.WriteString(line(op))
		}
		t.Logf("task %s: %s; %d of its %d operations linearize:\n%s", part[0].Input.(linInput).Task, res, len(best), len(part), b.String())
	}
}

// checkStreams reads every task's stream after the run: a write the server
// acknowledged is in it exactly once, a write it definitely refused is not
// in it, one with an unknown outcome at most once (titles and label values
// are unique, so each names its operation).
func (lc *linCluster) checkStreams(t *testing.T, rec *linRecorder) {
	t.Helper()
	s := lc.pick(rand.New(rand.NewPCG(1, 2)))
	written := map[string]int{}
	for _, tk := range rec.tasks {
		for _, e := range s.events(t, tk.id, "task_updated") {
			var d struct {
				Title  *string
				Labels map[string]string
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatalf("task_updated data %s: %v", e.Data, err)
			}
			if d.Title != nil {
				written["title "+*d.Title]++
			}
			if v, ok := d.Labels["w"]; ok {
				written["label "+v]++
			}
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.records {
		if r.in.Kind != linUpdate {
			continue
		}
		for _, key := range []string{"title " + r.in.Title, "label " + r.in.Label} {
			if strings.HasSuffix(key, " ") {
				continue
			}
			n := written[key]
			switch {
			case r.out.Unknown && n > 1:
				t.Errorf("%s (outcome unknown) is in the stream %d times", key, n)
			case !r.out.Unknown && r.out.Reason == "" && n != 1:
				t.Errorf("%s (acknowledged at v%d) is in the stream %d times", key, r.out.Version, n)
			case r.out.Reason != "" && n != 0:
				t.Errorf("%s (refused: %s) is in the stream %d times", key, r.out.Reason, n)
			}
		}
	}
}
