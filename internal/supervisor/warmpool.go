package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// A warm pool keeps, per runtime, a few plugin processes launched and
// handshaken ahead of need, so that starting a pod costs one Start call
// instead of a process launch (fork, exec, the plugin's Go runtime and
// package initialisation, the go-plugin handshake).
//
// Start is the assignment: nothing of a task is given to a plugin before it.
// A plugin's command line, environment and process group are the same for
// every pod of its runtime (the runtime name, the server's minimal plugin
// environment, the orphan grace, a group of its own); the task id, its
// config, the work directory and the host service all travel in Start. An
// allow-listed plugin runs from its private copy, hashed once when
// discovery wrote it (catalog), so a warm process is as verified as a cold
// one and is not hashed again.
//
// Each warm process has one owner at a time: the slot goroutine that
// launched it until a start takes it, then that start (and the pod's run).
// A slot launches a replacement as soon as its process is taken. A warm
// process that dies while idle is released and replaced; it belonged to no
// task, so nothing is recorded. The pool ends with the supervisor (its
// idle processes are shut down first in Shutdown); when the server dies
// without a shutdown, an idle plugin sees its host connection close and
// exits after its orphan grace, as any plugin does (podapi.Serve).

// MaxWarmPods bounds the idle processes kept for one runtime.
const MaxWarmPods = 64

// warmBackoffMin and warmBackoffMax bound the wait before a slot launches
// again after a launch failed or its process died young: a broken runtime
// must not be relaunched in a tight loop.
const (
	warmBackoffMin = time.Second
	warmBackoffMax = time.Minute
	// warmYoung is how long a warm process must have lived for its death
	// not to count as a failure of the runtime.
	warmYoung = 10 * time.Second
	// warmSettle is how long the pool waits after the last take before it
	// launches replacements: a burst of starts (a takeover, a resume) must
	// not compete for the CPU with the launches that refill the pool, or
	// the burst's Start calls wait behind them.
	warmSettle = 200 * time.Millisecond
)

// warmProc is an idle, handshaken plugin process.
type warmProc struct {
	conn       *pluginConn
	proc       *proc
	tail       *stderrTail
	launchedAt time.Time
}

// shutdown ends an idle process: go-plugin's graceful shutdown first (the
// plugin has no work to stop), SIGKILL to its group after wait.
func (w *warmProc) shutdown(wait time.Duration) {
	w.conn.close(w.proc, wait)
	t := time.NewTimer(wait)
	select {
	case <-w.proc.exited():
	case <-t.C:
		_ = terminate(w.proc, DefaultKillWait)
	}
	t.Stop()
	w.conn.release(w.proc)
}

// warmPool is the supervisor's pool: one unbuffered channel per runtime on
// which its slots offer their idle processes.
type warmPool struct {
	s      *Supervisor
	sizes  map[string]int
	ready  map[string]chan *warmProc
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	m      *warmMetrics

	mu   sync.Mutex
	idle map[int]string // pid → runtime of the processes waiting now

	// launching bounds the launches under way at once, all runtimes
	// together: half the CPUs, so a refill leaves room for the server.
	launching chan struct{}
	lastTake  atomic.Int64 // unix nanoseconds of the last take
}

func (p *warmPool) setIdle(pid int, runtime string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.idle[pid] = runtime
	} else {
		delete(p.idle, pid)
	}
}

// idlePIDs lists the pids of the idle processes of runtime.
func (p *warmPool) idlePIDs(runtime string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for pid, rt := range p.idle {
		if rt == runtime {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

type warmMetrics struct {
	idle     *prometheus.GaugeVec   // runtime
	starts   *prometheus.CounterVec // runtime, source (warm|cold)
	launches *prometheus.CounterVec // runtime, outcome (ok|failed)
	deaths   *prometheus.CounterVec // runtime
}

func newWarmMetrics(reg prometheus.Registerer) (*warmMetrics, error) {
	m := &warmMetrics{
		idle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ipa_pod_warm_idle", Help: "Idle, handshaken plugin processes waiting for a pod, by runtime (--warm-pods).",
		}, []string{"runtime"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_warm_starts_total", Help: "Pod launches of runtimes with a warm pool, by where the process came from (warm: the pool; cold: the pool was empty).",
		}, []string{"runtime", "source"}),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_warm_launches_total", Help: "Plugin processes the warm pool launched, by outcome (ok, failed).",
		}, []string{"runtime", "outcome"}),
		deaths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_warm_exits_total", Help: "Idle warm plugin processes that ended before any pod took them (replaced; no task's crash).",
		}, []string{"runtime"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.idle, m.starts, m.launches, m.deaths} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newWarmPool returns the pool for sizes (runtime → idle processes), or nil
// when no runtime asks for one.
func newWarmPool(s *Supervisor, sizes map[string]int) (*warmPool, error) {
	kept := map[string]int{}
	for rt, n := range sizes {
		if n > 0 {
			kept[rt] = n
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	m, err := newWarmMetrics(s.cfg.Registry)
	if err != nil {
		return nil, err
	}
	p := &warmPool{s: s, sizes: kept, ready: map[string]chan *warmProc{}, m: m, idle: map[int]string{},
		launching: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))}
	for rt := range kept {
		p.ready[rt] = make(chan *warmProc)
	}
	return p, nil
}

// start launches every slot's goroutine. Called once, from Supervisor.Start.
func (p *warmPool) start() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for rt, n := range p.sizes {
		for range n {
			p.wg.Add(1)
			go p.slot(rt)
		}
	}
	p.s.log.Info("warm pool started", slog.Any("warm_pods", p.sizes))
}

// close ends every slot and the idle process it holds, and returns when
// they are gone. A process a start took already is that start's.
func (p *warmPool) close() {
	if p.cancel == nil {
		return // never started
	}
	p.cancel()
	p.wg.Wait()
}

// take returns an idle process of runtime, or nil when none is ready (the
// caller launches one cold). It never waits for a launch.
func (p *warmPool) take(runtime string) *warmProc {
	ch := p.ready[runtime]
	if ch == nil {
		return nil
	}
	for {
		select {
		case w := <-ch:
			p.setIdle(w.proc.pid, runtime, false)
			p.lastTake.Store(time.Now().UnixNano())
			if w.proc.alive() {
				p.m.starts.WithLabelValues(runtime, "warm").Inc()
				return w
			}
			// Died between its slot's last look and now: the slot has let
			// go of it, so it is ours to release.
			w.conn.release(w.proc)
			p.m.deaths.WithLabelValues(runtime).Inc()
		default:
			p.m.starts.WithLabelValues(runtime, "cold").Inc()
			return nil
		}
	}
}

// slot keeps one idle process of runtime until the pool closes: it
// launches one, offers it until a start takes it (then launches the next),
// and replaces it when it dies.
func (p *warmPool) slot(runtime string) {
	defer p.wg.Done()
	log := p.s.log.With(slog.String("runtime", runtime), slog.Bool("warm", true))
	backoff := time.Duration(0)
	wait := func() bool {
		if backoff == 0 {
			backoff = warmBackoffMin
		} else {
			backoff = min(2*backoff, warmBackoffMax)
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-p.ctx.Done():
			return false
		}
	}
	for p.ctx.Err() == nil {
		if !p.settle() {
			return
		}
		w, err := p.launch(runtime, log)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.m.launches.WithLabelValues(runtime, "failed").Inc()
			log.Warn("warm plugin launch failed", slog.Any("error", err), slog.Any("stderr", w.tailLines()))
			if !wait() {
				return
			}
			continue
		}
		p.m.launches.WithLabelValues(runtime, "ok").Inc()
		p.m.idle.WithLabelValues(runtime).Inc()
		p.setIdle(w.proc.pid, runtime, true)
		select {
		case p.ready[runtime] <- w:
			// Taken: the start owns it now.
			p.setIdle(w.proc.pid, runtime, false)
			p.m.idle.WithLabelValues(runtime).Dec()
			backoff = 0
		case <-w.proc.exited():
			p.setIdle(w.proc.pid, runtime, false)
			p.m.idle.WithLabelValues(runtime).Dec()
			p.m.deaths.WithLabelValues(runtime).Inc()
			w.conn.release(w.proc)
			ex := w.proc.exitStatus()
			log.Warn("idle warm plugin exited; replacing it", slog.Int("pid", w.proc.pid), slog.Any("exit_code", ex.Code),
				slog.String("signal", ex.Signal), slog.Any("stderr", w.tail.Tail()))
			if time.Since(w.launchedAt) < warmYoung && !wait() {
				return
			}
		case <-p.ctx.Done():
			p.setIdle(w.proc.pid, runtime, false)
			p.m.idle.WithLabelValues(runtime).Dec()
			w.shutdown(p.s.cfg.KillWait)
			return
		}
	}
}

// settle waits until no take has happened for warmSettle and a launch
// slot is free, and takes it (launch gives it back). It returns false when
// the pool closes first.
func (p *warmPool) settle() bool {
	for {
		quiet := warmSettle - time.Since(time.Unix(0, p.lastTake.Load()))
		if quiet <= 0 {
			break
		}
		t := time.NewTimer(quiet)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return false
		}
	}
	select {
	case p.launching <- struct{}{}:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// tailLines is the stderr of a failed launch, for the log.
func (w *warmProc) tailLines() []string {
	if w == nil || w.tail == nil {
		return nil
	}
	return w.tail.Tail()
}

// launch starts one idle plugin of runtime and completes its handshake.
// On error the returned warmProc holds only the stderr tail.
func (p *warmPool) launch(runtime string, log *slog.Logger) (*warmProc, error) {
	defer func() { <-p.launching }()
	cmd, err := p.s.pluginCommand(runtime)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.s.cfg.StartTimeout)
	defer cancel()
	tail := newStderrTail(log.With(slog.String("source", "plugin")))
	began := time.Now()
	conn, pr, err := launchPlugin(ctx, cmd, tail, log, p.s.cfg.StartTimeout, nil)
	if err != nil {
		return &warmProc{tail: tail}, err
	}
	log.Debug("warm plugin ready", slog.Int("pid", pr.pid), slog.Duration("took", time.Since(began)))
	return &warmProc{conn: conn, proc: pr, tail: tail, launchedAt: time.Now()}, nil
}

// ParseWarmPods reads --warm-pods values: "N" for every runtime of
// runtimes, "NAME=N" for one, comma-separated or repeated; a later value
// for a runtime wins, so "2,exec=0" warms every runtime but exec. It
// returns a map of the runtimes with N > 0, or an error naming the bad
// value (unknown runtime, N not a whole number from 0 to MaxWarmPods).
func ParseWarmPods(values []string, runtimes []string) (map[string]int, error) {
	known := map[string]bool{}
	for _, r := range runtimes {
		known[r] = true
	}
	sizes := map[string]int{}
	count := func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > MaxWarmPods {
			return 0, fmt.Errorf("--warm-pods: %q is not a number of processes from 0 to %d", s, MaxWarmPods)
		}
		return n, nil
	}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			name, num, per := strings.Cut(item, "=")
			n, err := count(num)
			if !per {
				n, err = count(name)
			}
			if err != nil {
				return nil, err
			}
			if !per {
				for _, r := range runtimes {
					sizes[r] = n
				}
				continue
			}
			name = strings.TrimSpace(name)
			if !known[name] {
				names := append([]string(nil), runtimes...)
				sort.Strings(names)
				return nil, fmt.Errorf("--warm-pods: unknown runtime %q (runtimes: %s)", name, strings.Join(names, ", "))
			}
			sizes[name] = n
		}
	}
	for r, n := range sizes {
		if n == 0 {
			delete(sizes, r)
		}
	}
	return sizes, nil
}

// warmGone reports whether a Start that failed with err failed because the
// warm process it went to is dead: the call could not reach it, and the
// process ends (or has ended) within a second.
func warmGone(pr *proc, err error) bool {
	if !errors.Is(err, podapi.ErrRuntimeUnavailable) {
		return false
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-pr.exited():
		return true
	case <-t.C:
		return false
	}
}
