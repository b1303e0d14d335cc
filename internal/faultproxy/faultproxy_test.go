package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// echo is a real TCP server that sends every line back.
type echo struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		e.mu.Lock()
		for _, c := range e.conns {
			_ = c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// recv reads one line, waiting at most within.
func (c *client) recv(within time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(within))
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func (c *client) roundTrip(t *testing.T, line string) {
	t.Helper()
	c.send(t, line)
	got, err := c.recv(10 * time.Second)
	if err != nil || got != line {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestForwards(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	a.roundTrip(t, "hello")
	b.roundTrip(t, "world")
	big := strings.Repeat("x", 200<<10) // several chunks
	a.roundTrip(t, big)
	if n := p.Conns(); n != 2 {
		t.Fatalf("Conns() = %d, want 2", n)
	}
}

func TestCutEndsConnectionsAndRefusesNewOnesUntilHeal(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a := dial(t, p.Addr())
	a.roundTrip(t, "before")

	p.Cut()
	if _, err := a.recv(10 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("open connection after Cut: read error %v, want it ended", err)
	}
	// A new connection is accepted by the kernel but ended at once: it
	// never reaches the target.
	// (The reset can even reach the dial first.)
	if c, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second); err == nil {
		b := &client{c: c, r: bufio.NewReader(c)}
		_, _ = io.WriteString(c, "during\n")
		got, err := b.recv(10 * time.Second)
		_ = c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("new connection during Cut: %q, %v; want it ended", got, err)
		}
	}

	p.Heal()
	c := dial(t, p.Addr())
	c.roundTrip(t, "after")
}

func TestStallHoldsBytesUntilHeal(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a := dial(t, p.Addr())
	a.roundTrip(t, "before")

	p.Stall()
	a.send(t, "held")
	if got, err := a.recv(300 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("stalled connection answered: %q, %v", got, err)
	}
	// New connections are accepted and kept, but silent too.
	b := dial(t, p.Addr())
	b.send(t, "new")
	if got, err := b.recv(300 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("connection opened during the stall answered: %q, %v", got, err)
	}

	p.Heal()
	for _, c := range []struct {
		cl   *client
		line string
	}{{a, "held"}, {b, "new"}} {
		if got, err := c.cl.recv(10 * time.Second); err != nil || got != c.line {
			t.Fatalf("after Heal: %q, %v; want %q delivered", got, err, c.line)
		}
	}
}

func TestCutEndsStalledConnections(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a := dial(t, p.Addr())
	p.Stall()
	a.send(t, "held")
	p.Cut()
	if _, err := a.recv(10 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("stalled connection after Cut: %v, want it ended", err)
	}
}

func TestDelayAddsLatencyBothWays(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a := dial(t, p.Addr())
	const d = 150 * time.Millisecond
	p.Delay(d)
	began := time.Now()
	a.roundTrip(t, "slow")
	// A lower bound only: each direction waited d before writing.
	if took := time.Since(began); took < 2*d {
		t.Fatalf("round trip took %s with a %s delay each way", took, d)
	}
	p.Heal()
	a.roundTrip(t, "fast again")
}

// TestCloseLeavesNothing: Close ends every connection, even a stalled one,
// and returns only when every goroutine it started has.
func TestCloseLeavesNothing(t *testing.T) {
	e := newEcho(t)
	before := runtime.NumGoroutine()
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, p.Addr())
	a.roundTrip(t, "x")
	p.Stall()
	a.send(t, "held") // a pump is parked in the gate
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.recv(10 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("connection after Close: %v, want it ended", err)
	}
	// The echo side's goroutines for a's connection end when it sees the
	// reset; ours are already gone.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}
