package auth

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
)

// The anonymous local door admits only the server's own OS user. A loopback
// port is open to every user of the machine, so "no token yet" must not mean
// "anyone here is admin": each connection's owner is asked of the kernel —
// the uid of the client's end of a loopback TCP connection from its socket
// table (/proc/net/tcp and /proc/net/tcp6, as identd does), the peer
// credentials (SO_PEERCRED) of a Unix socket — once per connection, the
// first time the door is asked about it. A connection whose owner cannot be
// told is refused like another user's.

// connPeer finds, once, who owns the client's end of one connection.
type connPeer struct {
	once   sync.Once
	lookup func() (uid int, ok bool)
	uid    int
	ok     bool
}

func (p *connPeer) owner() (int, bool) {
	p.once.Do(func() {
		if p.lookup != nil {
			p.uid, p.ok = p.lookup()
		}
	})
	return p.uid, p.ok
}

type connPeerKey struct{}

// ConnContext is an http.Server's ConnContext: it gives every request of
// connection c the means to find who owns c's client end, asked at most
// once per connection and only when the anonymous door needs it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connPeerKey{}, &connPeer{lookup: peerLookup(c)})
}

// peerLookup returns how to find the owner of c's client end, or nil when
// there is no way.
func peerLookup(c net.Conn) func() (int, bool) {
	if uc, ok := c.(*net.UnixConn); ok {
		return func() (int, bool) { return unixPeerUID(uc) }
	}
	local, lok := c.LocalAddr().(*net.TCPAddr)
	remote, rok := c.RemoteAddr().(*net.TCPAddr)
	if lok && rok {
		return func() (int, bool) { return tcpPeerUID(remote, local) }
	}
	return nil
}

// peerUID returns the uid of the client of the request ctx belongs to.
// Without ConnContext (a server not built by httpserver.NewServer) it looks
// the TCP connection up from the request's addresses, once per request.
func peerUID(ctx context.Context) (int, bool) {
	if p, ok := ctx.Value(connPeerKey{}).(*connPeer); ok {
		return p.owner()
	}
	local, _ := ctx.Value(http.LocalAddrContextKey).(*net.TCPAddr)
	remote, err := net.ResolveTCPAddr("tcp", RemoteAddr(ctx))
	if local == nil || err != nil {
		return 0, false
	}
	return tcpPeerUID(remote, local)
}

// serverUID is the user the server runs as: the only one the door admits.
var serverUID = os.Geteuid()

// peerIsServerUser reports whether the request's connection belongs to the
// server's own OS user; false when its owner cannot be told.
func peerIsServerUser(ctx context.Context) bool {
	uid, ok := peerUID(ctx)
	return ok && uid == serverUID
}
