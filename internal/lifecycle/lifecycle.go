// Package lifecycle is the one way the server's long-lived parts start and
// stop. A Service starts its background work in Start and ends it in Stop;
// a Group starts services in order and stops them in the reverse order, so
// a part is stopped only once everything started after it (everything that
// may still call it) has stopped. Base holds the start/stop state most
// services need.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// Service is a long-lived part of the server.
//
// Start begins the service's background work and returns once it is under
// way; an error says it could not begin. Start after Start does nothing.
//
// Stop ends that work and returns only when every goroutine the service owns
// has returned. It may be called before Start (the service then never
// starts), more than once, and concurrently: every call returns once the
// service has stopped.
type Service interface {
	Start(ctx context.Context) error
	Stop()
}

// StopReporter is a Service whose stop can fall short in a way its owner
// must hear of, e.g. pods still alive at the shutdown timeout were killed,
// or a store did not close cleanly. StopErr says so once Stop has returned.
type StopReporter interface {
	Service
	StopErr() error
}

// ErrStopped is returned by Group.Start once the group has been stopped.
var ErrStopped = errors.New("lifecycle: stopped")

// Group starts services in order and stops them in reverse. The zero value
// is ready to use.
type Group struct {
	mu       sync.Mutex
	services []Service
	stopped  bool

	stopOnce sync.Once
	stopErr  error
}

// Start starts s and adds it to the services Stop stops. s is added even
// when its Start fails: it may have begun something, and a Service
// tolerates Stop whatever happened. After Stop, Start starts nothing and
// returns ErrStopped.
func (g *Group) Start(ctx context.Context, s Service) error {
	if !g.Add(s) {
		return ErrStopped
	}
	return s.Start(ctx)
}

// Add adds a service that is already running (it began its work when it was
// built) so that Stop stops it at this turn; it reports false once the group
// has been stopped. A service added more than once is stopped at the turn of
// its last addition; its earlier turns find it stopped already.
func (g *Group) Add(s Service) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.services = append(g.services, s)
	return true
}

// Stop stops every service added, the last added first, each one fully
// before the next, and returns what the StopReporters among them reported.
// Later calls wait for the first and return the same.
func (g *Group) Stop() error {
	g.stopOnce.Do(func() {
		g.mu.Lock()
		g.stopped = true
		services := g.services
		g.services = nil
		g.mu.Unlock()
		var errs []error
		for i := len(services) - 1; i >= 0; i-- {
			services[i].Stop()
			if r, ok := services[i].(StopReporter); ok {
				errs = append(errs, r.StopErr())
			}
		}
		g.stopErr = errors.Join(errs...)
	})
	return g.stopErr
}

// OnStop returns a Service with nothing to start whose Stop calls stop once:
// a step of the shutdown that belongs at a place in the order (close the
// store, let go of a lock, hand pods over). Its StopErr is stop's error.
func OnStop(stop func() error) StopReporter {
	return &onStop{stop: stop}
}

type onStop struct {
	stop func() error
	once sync.Once
	err  error
}

func (o *onStop) Start(context.Context) error { return nil }
func (o *onStop) Stop()                       { o.once.Do(func() { o.err = o.stop() }) }
func (o *onStop) StopErr() error              { return o.err }

// Base is the start/stop state of a service whose work is goroutines that
// end when a context is cancelled. Embed it (or keep it in a field), begin
// Start with StartInit and run the work with Go; Stop is provided.
// The zero value is ready to use.
type Base struct {
	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// StartInit marks the service started. It returns the context the service's
// goroutines run under (derived from ctx, cancelled by Stop) and whether
// to start them: false when the service was started or stopped before.
func (b *Base) StartInit(ctx context.Context) (context.Context, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.stopped {
		return ctx, false
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	return ctx, true
}

// Go runs f in a goroutine Stop waits for. Once Stop has begun it runs
// nothing and reports false: the caller undoes what it prepared for f.
func (b *Base) Go(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	b.wg.Go(f)
	return true
}

// Stop cancels the context of StartInit and waits for every goroutine Go
// started. Safe before Start (the service then never starts), twice and
// concurrently.
func (b *Base) Stop() {
	b.mu.Lock()
	b.stopped = true
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Stopping reports whether Stop has been called.
func (b *Base) Stopping() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopped
}
