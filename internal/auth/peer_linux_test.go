package auth

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nobody is the uid the tests connect as when they must be someone else.
const nobody = 65534

// requireRootWith skips a test that needs to act as another user: only
// root can (runuser), and only with the tools it names installed.
func requireRootWith(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to connect as another user (runuser -u nobody)")
	}
	for _, tool := range append([]string{"runuser"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to connect as another user", tool)
		}
	}
}

// owner is what the lookups found for one accepted connection.
type owner struct {
	uid, procUID, diagUID int
	ok, procOK, diagOK    bool
	tcp                   bool
}

// acceptOwners serves ln: for each connection it reports the owner its
// ConnContext finds (and, for TCP, what each of the two ways of asking the
// kernel finds), then answers an empty HTTP 200 and closes it.
func acceptOwners(ln net.Listener) <-chan owner {
	owners := make(chan owner, 16)
	go func() {
		defer close(owners)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var o owner
			o.uid, o.ok = peerUID(ConnContext(context.Background(), c))
			if remote, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				local := c.LocalAddr().(*net.TCPAddr)
				o.tcp = true
				o.procUID, o.procOK = procTCPPeerUID(remote, local)
				o.diagUID, o.diagOK = sockDiagUID(remote, local)
			}
			owners <- o
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			_ = c.Close()
		}
	}()
	return owners
}

// nextOwner returns the owner of the next connection; for TCP both ways of
// asking must agree.
func nextOwner(t *testing.T, owners <-chan owner) (int, bool) {
	t.Helper()
	select {
	case o := <-owners:
		if o.tcp {
			require.True(t, o.procOK, "/proc/net/tcp has no row for the connection")
			require.True(t, o.diagOK, "sock_diag found no socket for the connection")
			require.Equal(t, o.procUID, o.diagUID, "/proc/net/tcp and sock_diag disagree")
			require.Equal(t, o.procUID, o.uid)
		}
		return o.uid, o.ok
	case <-time.After(20 * time.Second):
		t.Fatal("no connection")
	}
	return 0, false
}

// TestTCPPeerOwner: the owner of a loopback TCP connection's client end is
// read from the kernel's socket table: this process's user for its own
// connection, and nobody for curl run as nobody — over IPv4 and IPv6.
func TestTCPPeerOwner(t *testing.T) {
	for _, network := range []struct{ name, addr string }{{"IPv4", "127.0.0.1:0"}, {"IPv6", "[::1]:0"}} {
		t.Run(network.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", network.addr)
			if err != nil {
				t.Skipf("no %s loopback here: %v", network.name, err)
			}
			defer ln.Close()
			owners := acceptOwners(ln)

			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			uid, ok := nextOwner(t, owners)
			require.True(t, ok, "the owner of this process's own connection was not found")
			require.Equal(t, os.Geteuid(), uid)
			_ = c.Close()

			requireRootWith(t, "curl")
			url := "http://" + ln.Addr().String() + "/"
			out, err := exec.Command("runuser", "-u", "nobody", "--", "curl", "-sS", "--noproxy", "*", "-m", "20", url).CombinedOutput()
			require.NoError(t, err, "%s", out)
			uid, ok = nextOwner(t, owners)
			require.True(t, ok)
			require.Equal(t, nobody, uid)
		})
	}
}

// TestTCPPeerUnknown: a connection that is not in the table (a made-up
// address) has no owner, and a non-loopback client is never looked up.
func TestTCPPeerUnknown(t *testing.T) {
	_, ok := tcpPeerUID(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2})
	require.False(t, ok)
	_, ok = sockDiagUID(&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, &net.TCPAddr{IP: net.IPv6loopback, Port: 2})
	require.False(t, ok)
	_, ok = tcpPeerUID(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2})
	require.False(t, ok)
	_, ok = peerUID(context.Background())
	require.False(t, ok, "a request with no connection has no owner")
}

// TestUnixPeerOwner: the owner of a Unix socket connection is its peer
// credentials (SO_PEERCRED): this process's user, and nobody for curl run
// as nobody on a socket it may open.
func TestUnixPeerOwner(t *testing.T) {
	dir, err := os.MkdirTemp("", "ipa-peer-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()
	owners := acceptOwners(ln)

	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	uid, ok := nextOwner(t, owners)
	require.True(t, ok)
	require.Equal(t, os.Geteuid(), uid)
	_ = c.Close()

	requireRootWith(t, "curl")
	require.NoError(t, os.Chmod(path, 0o666))
	out, err := exec.Command("runuser", "-u", "nobody", "--", "curl", "-sS", "-m", "20", "--unix-socket", path, "http://localhost/").CombinedOutput()
	require.NoError(t, err, "%s", out)
	uid, ok = nextOwner(t, owners)
	require.True(t, ok)
	require.Equal(t, nobody, uid, "uid "+strconv.Itoa(uid))
}

// BenchmarkTCPPeerUID measures one owner lookup — made at most once per
// connection and only while the anonymous door is open — each way, with
// the machine's sockets as they are.
func BenchmarkTCPPeerUID(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	defer c.Close()
	sc := <-accepted
	defer sc.Close()
	rows, err := os.ReadFile(procNetTCP[0])
	require.NoError(b, err)
	client, server := sc.RemoteAddr().(*net.TCPAddr), sc.LocalAddr().(*net.TCPAddr)
	for _, way := range []struct {
		name   string
		lookup func(client, server *net.TCPAddr) (int, bool)
	}{{"sock_diag", sockDiagUID}, {"proc", procTCPPeerUID}} {
		b.Run(way.name, func(b *testing.B) {
			for b.Loop() {
				if _, ok := way.lookup(client, server); !ok {
					b.Fatal("not found")
				}
			}
			b.ReportMetric(float64(strings.Count(string(rows), "\n")-1), "tcp-rows")
		})
	}
}
