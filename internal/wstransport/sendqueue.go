package wstransport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// The write path of a WebSocket connection. A sendQueue sits between the
// connection's writers and the TCP connection: a frame is appended to the
// connection's queue and the call returns; one writer goroutine, started only
// while there is something to write, sends everything queued in one write.
// Frames stay in order (one queue, one writer) and whole: the transport
// appends each of its frames in one call (WriteFrame, TryWriteFrame), and the
// WebSocket library's own control frames arrive whole from its flush.
//
// The queue is bounded (maxQueuedBytes). A cohort offers its frames with
// TryWriteFrame and moves a member whose connection is full to catch-up from
// the store (package cohort), so the writers and the other members never
// wait; other writers wait for room. A write that makes no progress for
// the queue's timeout (sendTimeout unless configured) fails the connection,
// and a failed connection is closed at once: nothing written to it can
// arrive any more, and only its end tells the client, the read loop (which
// then ends every operation, taking cohort members out of their cohort) and
// the writers waiting for room.

const (
	// maxQueuedBytes bounds what one connection may have queued.
	maxQueuedBytes = 1 << 20
	// sendTimeout is how long a write to the client may make no progress
	// (Config.SendTimeout overrides it).
	sendTimeout = 30 * time.Second
	// closeFlushTimeout bounds how long closing waits for queued frames
	// (the close frame among them) to go out.
	closeFlushTimeout = time.Second
)

// sendQueue is a net.Conn whose writes are queued and coalesced.
type sendQueue struct {
	net.Conn

	timeout time.Duration // how long a write may make no progress

	mu      sync.Mutex
	cond    sync.Cond // signalled when the queue drains or fails
	queued  []byte
	writing bool // the writer goroutine runs
	closing bool
	err     error
}

func newSendQueue(c net.Conn, timeout time.Duration) *sendQueue {
	if timeout <= 0 {
		timeout = sendTimeout
	}
	q := &sendQueue{Conn: c, timeout: timeout}
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

// TryWriteFrame queues one unmasked WebSocket text frame whose payload is
// the parts joined, without waiting: it reports false, queuing nothing, when
// the frame does not fit in the bound (or the connection failed). The parts
// are copied straight into the queue, so a cohort that writes the same
// payload to many connections builds no frame of its own per connection.
func (q *sendQueue) TryWriteFrame(parts ...[]byte) bool {
	n := frameLen(parts)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil || !q.fits(n) {
		return false
	}
	q.appendFrame(n, parts)
	return true
}

// WriteFrame is TryWriteFrame that waits for room while the queue is full.
func (q *sendQueue) WriteFrame(parts ...[]byte) error {
	n := frameLen(parts)
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.err == nil && !q.fits(n) {
		q.cond.Wait()
	}
	if q.err != nil {
		return q.err
	}
	q.appendFrame(n, parts)
	return nil
}

func frameLen(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// fits reports whether a frame with an n-byte payload may be queued now
// (q.mu held): always into an empty queue, else within the bound.
func (q *sendQueue) fits(n int) bool {
	return len(q.queued) == 0 || len(q.queued)+n+maxFrameHeader <= maxQueuedBytes
}

// appendFrame queues the frame and starts the writer if it is not running
// (q.mu held).
func (q *sendQueue) appendFrame(n int, parts [][]byte) {
	q.queued = appendFrameHeader(q.queued, n)
	for _, p := range parts {
		q.queued = append(q.queued, p...)
	}
	if !q.writing {
		q.writing = true
		go q.send()
	}
}

// maxFrameHeader is the longest header of an unmasked frame.
const maxFrameHeader = 10

// appendFrameHeader appends the header of a final, unmasked text frame with
// an n-byte payload (RFC 6455 section 5.2; a server never masks).
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		return append(b, finText, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// send writes everything queued, in as few writes as the queue allows, and
// ends when the queue is empty. An idle connection keeps no buffer.
func (q *sendQueue) send() {
	var buf []byte
	q.mu.Lock()
	for len(q.queued) > 0 && q.err == nil {
		buf, q.queued = q.queued, buf[:0]
		q.mu.Unlock()
		err := q.write(buf)
		q.mu.Lock()
		if err != nil {
			q.err = err
			q.queued = nil
			if !q.closing {
				// Nobody would learn of the failure otherwise: a cohort
				// member's catch-up stops at its failed write, and the
				// connection would stay open with nothing ever arriving
				// on it. Close's own flush closes the connection itself.
				_ = q.Conn.Close()
			}
		}
		q.cond.Broadcast()
	}
	q.writing = false
	q.queued = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}

// write writes buf whole, failing only when a write makes no progress for
// q.timeout: a client that reads slowly but steadily is not cut off for
// taking longer than that over a full queue. While closing, the nearer
// deadline Close set stands: both are set under q.mu, so Close's is never
// overwritten.
func (q *sendQueue) write(buf []byte) error {
	for {
		q.mu.Lock()
		closing := q.closing
		if !closing {
			_ = q.Conn.SetWriteDeadline(time.Now().Add(q.timeout))
		}
		q.mu.Unlock()
		n, err := q.Conn.Write(buf)
		buf = buf[n:]
		if err == nil || len(buf) == 0 {
			return nil
		}
		if n == 0 || closing || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
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
// queue. Only the library's own control frames go through it — a pong or a
// close, at most 127 bytes with their header, so each is flushed whole — so
// it is small: every open connection holds one.
const frameBufferSize = 128

// readBufferSize is the read buffer of a connection. Clients send little (a
// subscribe, a ping); a larger message is read through it in turns. net/http
// hands over its 4 KiB reader with the connection, which would be a quarter
// of an idle subscriber's memory.
const readBufferSize = 256

// queuedWriter lets the WebSocket library hijack the connection as usual,
// and hands it the connection behind a sendQueue, with small buffers.
type queuedWriter struct {
	http.ResponseWriter
	timeout time.Duration // the send queue's (0: sendTimeout)
	q       *sendQueue    // set by Hijack
	br      *bufio.Reader // set by Hijack
}

// Hijack takes the connection over and wraps it in a sendQueue. The
// library writes its frames through the returned bufio.Writer, which flushes
// into the queue, and reads through a small reader holding what net/http had
// already read ahead.
func (w *queuedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // nothing is buffered after the 101; be sure
		_ = c.Close()
		return nil, nil, err
	}
	ahead, _ := brw.Reader.Peek(brw.Reader.Buffered())
	ahead = bytes.Clone(ahead) // nil when nothing came ahead
	w.q = newSendQueue(c, w.timeout)
	br := bufio.NewReaderSize(w.q, readBufferSize)
	if len(ahead) > 0 {
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(ahead), w.q), max(readBufferSize, len(ahead)))
		_, _ = br.Peek(len(ahead)) // into br's own buffer, where the library looks for it
	}
	w.br = br
	return w.q, bufio.NewReadWriter(br, bufio.NewWriterSize(w.q, frameBufferSize)), nil
}
