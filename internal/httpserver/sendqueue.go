package httpserver

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// The write path of a WebSocket connection. Every subscription on a socket
// writes its frames through the transport one at a time, each flushed on its
// own, so a socket with several frames ready (a batch of live events, the
// subscriptions of one client, a catch-up) paid one system call per frame.
// A sendQueue sits under the WebSocket library, between its flush and the
// TCP connection: a flushed frame is appended to the connection's queue and
// the call returns; one writer goroutine, started only while there is
// something to write, sends everything queued in one write. Frames stay in
// order (one queue, one writer) and whole (the library writes a frame before
// the next one starts).
//
// The queue is bounded (maxQueuedBytes): a client that cannot keep up makes
// its own subscriptions wait in their write, which backs up into their feeds,
// which drop to catch-up from the store (package feed) — the writers and the
// other clients never wait, and the connection never holds more than the
// bound. A write that makes no progress for sendTimeout fails the connection.

const (
	// maxQueuedBytes bounds what one connection may have queued.
	maxQueuedBytes = 1 << 20
	// sendTimeout bounds one write to the client.
	sendTimeout = 30 * time.Second
	// closeFlushTimeout bounds how long closing waits for queued frames
	// (the close frame among them) to go out.
	closeFlushTimeout = time.Second
)

// sendQueue is a net.Conn whose writes are queued and coalesced.
type sendQueue struct {
	net.Conn

	mu      sync.Mutex
	cond    sync.Cond // signalled when the queue drains or fails
	queued  []byte
	writing bool // the writer goroutine runs
	closing bool
	err     error
}

func newSendQueue(c net.Conn) *sendQueue {
	q := &sendQueue{Conn: c}
	q.cond.L = &q.mu
	return q
}

// Write queues p and returns at once, unless the queue is full: then it
// waits for room. It returns the error of an earlier write, if any.
func (q *sendQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.err == nil && len(q.queued) > 0 && len(q.queued)+len(p) > maxQueuedBytes {
		q.cond.Wait()
	}
	if q.err != nil {
		return 0, q.err
	}
	q.queued = append(q.queued, p...)
	if !q.writing {
		q.writing = true
		go q.send()
	}
	return len(p), nil
}

// send writes everything queued, in as few writes as the queue allows, and
// ends when the queue is empty. An idle connection keeps no buffer.
func (q *sendQueue) send() {
	var buf []byte
	q.mu.Lock()
	for len(q.queued) > 0 && q.err == nil {
		buf, q.queued = q.queued, buf[:0]
		closing := q.closing
		q.mu.Unlock()
		if !closing { // Close set a nearer deadline
			_ = q.Conn.SetWriteDeadline(time.Now().Add(sendTimeout))
		}
		_, err := q.Conn.Write(buf)
		q.mu.Lock()
		if err != nil {
			q.err = err
			q.queued = nil
		}
		q.cond.Broadcast()
	}
	q.writing = false
	q.queued = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}

// Close sends what is queued (the close frame is usually last), waiting at
// most closeFlushTimeout, then closes the connection.
func (q *sendQueue) Close() error {
	q.mu.Lock()
	q.closing = true
	if q.writing {
		_ = q.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for q.writing {
			q.cond.Wait()
		}
	}
	if q.err == nil {
		q.err = net.ErrClosed
	}
	q.cond.Broadcast()
	q.mu.Unlock()
	return q.Conn.Close()
}

// frameBufferSize is the WebSocket library's write buffer in front of the
// queue. The queue does the coalescing, so this buffer only gathers a frame's
// header with a small payload; a larger payload passes straight through to
// the queue. Small, because every open connection holds one: 4 KiB (the
// net/http size) was a fifth of an idle subscriber's heap.
const frameBufferSize = 512

// queuedWriter lets the WebSocket library hijack the connection as usual,
// and hands it the connection behind a sendQueue.
type queuedWriter struct {
	http.ResponseWriter
}

// Hijack takes the connection over and wraps it in a sendQueue. The
// library writes through the returned bufio.Writer, which flushes into the
// queue.
func (w queuedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // nothing is buffered after the 101; be sure
		_ = c.Close()
		return nil, nil, err
	}
	q := newSendQueue(c)
	return q, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(q, frameBufferSize)), nil
}
