package httpserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"
)

// SocketMode is the mode of the Unix socket ListenUnix makes: only the
// server's user may connect. The peer check (package auth) is what guards
// the anonymous door; the mode keeps other users off the socket altogether.
const SocketMode fs.FileMode = 0o600

// ListenUnix listens on a Unix socket at path with SocketMode. A socket
// file left behind by a server that is gone is replaced; one a running
// server answers on, or any other file, is refused.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by a running server", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("make %s private: %w", path, err)
	}
	return ln, nil // removes the file when closed
}

// MergeListeners returns one listener that accepts the connections of all
// of ls, so one http.Server serves them all (a TCP address and a Unix
// socket). Its address is the first one's; closing it closes them all and
// ends the goroutine accepting on each.
func MergeListeners(ls ...net.Listener) net.Listener {
	m := &mergedListener{ls: ls, conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	for _, l := range ls {
		go m.accept(l)
	}
	return m
}

type mergedListener struct {
	ls    []net.Listener
	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
}

func (m *mergedListener) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case m.errs <- err: // http.Server retries a temporary one
			case <-m.done:
				return
			}
			time.Sleep(10 * time.Millisecond) // a failing listener must not spin
			continue
		}
		select {
		case m.conns <- c:
		case <-m.done:
			_ = c.Close()
			return
		}
	}
}

func (m *mergedListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case err := <-m.errs:
		return nil, err
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *mergedListener) Close() error {
	var errs []error
	m.once.Do(func() {
		close(m.done)
		for _, l := range m.ls {
			errs = append(errs, l.Close())
		}
	})
	return errors.Join(errs...)
}

func (m *mergedListener) Addr() net.Addr { return m.ls[0].Addr() }
