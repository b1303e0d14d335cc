// Package faultproxy is a TCP proxy for tests that makes the faults a real
// network makes between a server and its database, one link at a time and
// without root: Cut (every connection ends, new ones are refused), Delay
// (latency on every chunk forwarded) and Stall (connections are accepted and
// kept, but nothing moves until Heal). A server pointed at the proxy's
// address instead of the database's can be partitioned alone while its
// peers keep talking to the same database directly or through their own
// proxies.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

type mode int

const (
	pass mode = iota
	stalled
	cut
)

// Proxy forwards the connections it accepts on a loopback port to target.
// Its zero value is not usable; see New.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	mode    mode
	delay   time.Duration
	changed chan struct{} // closed and replaced on every change of mode or delay
	links   map[*link]struct{}
	closed  bool

	wg sync.WaitGroup // the accept loop and every link's goroutines
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

// close ends both sides at once. A reset rather than a polite FIN, as a
// broken network path looks to the peers.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		for _, c := range []net.Conn{l.client, l.upstream} {
			if c == nil {
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// New starts a proxy to target (host:port) on 127.0.0.1 and an ephemeral
// port. Close stops it.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the host:port clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut ends every open connection and refuses new ones (they are accepted
// and reset at once) until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.setLocked(cut, p.delay)
	links := p.takeLinksLocked()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Stall keeps every connection open, and accepts new ones, but forwards no
// byte in either direction until Heal (or Cut). What was sent meanwhile is
// delivered after Heal, as TCP does when a path comes back.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.setLocked(stalled, p.delay)
	p.mu.Unlock()
}

// Delay forwards every chunk d later, in both directions (0 for none). It
// keeps the current mode: a stalled or cut proxy stays so.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.setLocked(p.mode, d)
	p.mu.Unlock()
}

// Heal forwards again, with no delay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.setLocked(pass, 0)
	p.mu.Unlock()
}

// Conns is how many proxied connections are open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops accepting, ends every connection and waits for every
// goroutine of the proxy to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.setLocked(cut, 0)
	links := p.takeLinksLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) setLocked(m mode, d time.Duration) {
	p.mode, p.delay = m, d
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) takeLinksLocked() []*link {
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
		delete(p.links, l)
	}
	return out
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (too many files): try again shortly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed || p.mode == cut {
			p.mu.Unlock()
			l.close()
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target and pumps both directions until either side ends
// or the link is cut.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.close()
	}()
	up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if _, ok := p.links[l]; !ok { // cut while dialling
		p.mu.Unlock()
		_ = up.Close()
		return
	}
	// Set under the lock a cut takes the link with, so a cut either finds
	// upstream set and closes it, or happened before and was seen above.
	l.upstream = up
	p.mu.Unlock()
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); p.pump(l, up, l.client) }()
	go func() { defer pumps.Done(); p.pump(l, l.client, up) }()
	pumps.Wait()
}

// pump copies src to dst chunk by chunk, each chunk passing the gate; the
// first error on either side ends the whole link.
func (p *Proxy) pump(l *link, dst io.Writer, src io.Reader) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate holds a chunk while the proxy is stalled and for the delay; it
// reports false when the link must end instead.
func (p *Proxy) gate(l *link) bool {
	delayed := false
	for {
		p.mu.Lock()
		m, d, changed := p.mode, p.delay, p.changed
		p.mu.Unlock()
		switch {
		case m == cut:
			return false
		case m == stalled:
			select {
			case <-changed:
				continue
			case <-l.done:
				return false
			}
		case d > 0 && !delayed:
			delayed = true
			timer := time.NewTimer(d)
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return false
			}
			continue // the mode may have changed meanwhile
		}
		return true
	}
}
