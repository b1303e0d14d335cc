package wstransport

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// readN reads exactly n bytes from c, failing on a hang.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	return buf
}

// Frames queued while a write is under way leave together, in order, in one
// write; the writer goroutine ends when the queue is empty.
func TestSendQueueCoalesces(t *testing.T) {
	server, client := net.Pipe() // synchronous: a write waits for its reader
	defer client.Close()
	cc := &countingConn{Conn: server}
	q := newSendQueue(cc, 0)
	defer q.Close()

	_, err := q.Write([]byte("a"))
	require.NoError(t, err)
	// The writer has taken "a" and waits for the reader.
	require.Eventually(t, func() bool { return cc.writes.Load() == 1 }, 30*time.Second, time.Millisecond)
	for _, s := range []string{"b", "c", "d"} {
		_, err := q.Write([]byte(s))
		require.NoError(t, err)
	}
	require.Equal(t, "a", string(readN(t, client, 1)))
	require.Equal(t, "bcd", string(readN(t, client, 3)))
	require.Equal(t, int64(2), cc.writes.Load())
}

// A full queue makes the next Write wait until the client reads; a failed
// connection fails the writes after it.
func TestSendQueueBounded(t *testing.T) {
	server, client := net.Pipe()
	cc := &countingConn{Conn: server}
	q := newSendQueue(cc, 0)
	_, err := q.Write([]byte("a"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return cc.writes.Load() == 1 }, 30*time.Second, time.Millisecond)
	big := bytes.Repeat([]byte("x"), maxQueuedBytes)
	_, err = q.Write(big) // the queue was empty: it fits
	require.NoError(t, err)
	returned := make(chan error, 1)
	go func() {
		_, err := q.Write([]byte("z"))
		returned <- err
	}()
	select {
	case <-returned:
		t.Fatal("a write over the bound did not wait")
	case <-time.After(50 * time.Millisecond): // it must still be waiting
	}
	require.Equal(t, "a", string(readN(t, client, 1)))
	require.Equal(t, big, readN(t, client, len(big)))
	require.NoError(t, <-returned)
	require.Equal(t, "z", string(readN(t, client, 1)))

	require.NoError(t, client.Close())
	_, _ = q.Write([]byte("lost")) // fails in the writer
	require.Eventually(t, func() bool { _, err := q.Write([]byte("after")); return err != nil }, 30*time.Second, time.Millisecond)
	require.NoError(t, q.Close())
}

// Close sends what is queued before it closes the connection.
func TestSendQueueCloseFlushes(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	q := newSendQueue(server, 0)
	_, err := q.Write([]byte("first"))
	require.NoError(t, err)
	_, err = q.Write([]byte("close-frame"))
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	require.Equal(t, "firstclose-frame", string(readN(t, client, len("firstclose-frame"))))
	require.NoError(t, <-closed)
	_, err = q.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
}

// Frames built by the queue (each header length form, parts joined) are
// read as whole text messages by a real WebSocket client; a frame that does
// not fit while the client reads nothing is refused by TryWriteFrame.
func TestSendQueueFrames(t *testing.T) {
	queues := make(chan *sendQueue, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		qw := &queuedWriter{ResponseWriter: w}
		if _, err := websocket.Accept(qw, r, nil); err != nil {
			return
		}
		queues <- qw.q
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	defer c.CloseNow()
	c.SetReadLimit(-1)
	q := <-queues

	var want [][]byte
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		p := bytes.Repeat([]byte{byte('a' + n%26)}, n)
		half := n / 2
		require.True(t, q.TryWriteFrame(p[:half], p[half:]), "a %d-byte frame into a queue with room", n)
		want = append(want, p)
	}
	// Nothing is read: once the socket buffers are full, the writer waits
	// and the queue fills up to its bound.
	for i := 0; ; i++ {
		require.Less(t, i, 200, "TryWriteFrame never refused while nothing was read")
		p := bytes.Repeat([]byte{byte('A' + i%26)}, 256<<10)
		if !q.TryWriteFrame(p) {
			break
		}
		want = append(want, p)
	}
	for i, p := range want {
		typ, got, err := c.Read(ctx)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, websocket.MessageText, typ)
		require.Equal(t, len(p), len(got), "message %d", i)
		require.True(t, bytes.Equal(p, got), "message %d", i)
	}
	require.True(t, q.TryWriteFrame([]byte("after")), "room again once the client read")
	_, got, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "after", string(got))
}

// A connection whose write makes no progress for the queue's timeout fails,
// and the queue closes it: the client, and the read loop that ends every
// operation of the connection, see its end. (Left open, the client would wait
// on a connection nothing is ever written to again.)
func TestSendQueueStalledConnectionIsClosed(t *testing.T) {
	server, client := net.Pipe() // nothing is read: the write cannot progress
	defer client.Close()
	q := newSendQueue(server, 50*time.Millisecond)
	// Generous: it bounds the wait for the close; without the close, the
	// read below ends in this timeout instead.
	require.NoError(t, client.SetReadDeadline(time.Now().Add(30*time.Second)))
	require.True(t, q.TryWriteFrame([]byte("never read")))
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.err != nil
	}, 30*time.Second, time.Millisecond, "the stalled write never failed")

	// The client reads only now.
	_, err := client.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the stalled connection was not closed")

	require.False(t, q.TryWriteFrame([]byte("after")))
	require.Error(t, q.WriteFrame([]byte("after")))
	_ = q.Close()
}

// stepConn's first write takes only half of what it is given and then
// reports its deadline passed, as a write to a slow client does.
type stepConn struct {
	net.Conn
	calls atomic.Int64
}

func (c *stepConn) Write(p []byte) (int, error) {
	if c.calls.Add(1) == 1 && len(p) > 1 {
		n, err := c.Conn.Write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		return n, os.ErrDeadlineExceeded
	}
	return c.Conn.Write(p)
}

// A write that runs out of time having made progress carries on: only a
// write that makes no progress for the timeout fails the connection.
func TestSendQueueSlowReaderKeepsConnection(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	sc := &stepConn{Conn: server}
	q := newSendQueue(sc, 0)
	defer q.Close()
	_, err := q.Write([]byte("0123456789"))
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(readN(t, client, 10)))
	_, err = q.Write([]byte("more"))
	require.NoError(t, err)
	require.Equal(t, "more", string(readN(t, client, 4)))
	require.GreaterOrEqual(t, sc.calls.Load(), int64(3))
}
