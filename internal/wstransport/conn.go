package wstransport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/cohort"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/rawtext"
)

// conn is one WebSocket connection: its read loop, its operations and
// its writes.
type conn struct {
	t     *Transport
	ws    *websocket.Conn
	q     *sendQueue
	br    *bufio.Reader
	proto *protocol
	exec  graphql.GraphExecutor

	ctx context.Context // the connection's, after connection_init

	mu       sync.Mutex
	ops      map[string]*operation
	inited   bool
	closed   bool
	timer    *time.Timer   // connection_init timeout, then keep-alive
	stopDone func() bool   // stops closing on the context's end
	closeHS  chan struct{} // closed when the close handshake is over; nil before close

	peeking      bool        // readLoop waits for the next message
	pendingClose *closeFrame // a close for readLoop to make
}

type closeFrame struct {
	code   websocket.StatusCode
	reason string
}

// operation is one subscribe (start) in flight.
type operation struct {
	id     string
	qid    []byte // id, JSON encoded
	next   []byte // the start of its next (data) messages, up to the payload
	cancel context.CancelFunc
	member *cohort.Member // nil unless the operation joined a cohort
	ended  bool           // guarded by conn.mu: its last message is out
}

func newConn(t *Transport, ws *websocket.Conn, q *sendQueue, br *bufio.Reader, exec graphql.GraphExecutor) *conn {
	return &conn{t: t, ws: ws, q: q, br: br, proto: protocolFor(ws.Subprotocol()), exec: exec,
		ops: map[string]*operation{}}
}

// serve runs the connection. Until connection_init is done it reads in the
// goroutine of the upgrade's handler: authenticating may go deep into the
// store, and a goroutine's stack stays as large as it once grew. Then a
// goroutine of its own, which only reads, takes over and the handler
// returns.
func (c *conn) serve(ctx context.Context, done func()) {
	c.ctx = ctx
	if c.t.cfg.InitTimeout > 0 {
		c.mu.Lock()
		c.timer = time.AfterFunc(c.t.cfg.InitTimeout, func() {
			c.mu.Lock()
			inited := c.inited
			c.mu.Unlock()
			if !inited {
				c.close(c.proto.initTimeoutCode, "Connection initialisation timeout")
			}
		})
		c.mu.Unlock()
	}
	for {
		c.mu.Lock()
		inited := c.inited
		c.mu.Unlock()
		if inited {
			break
		}
		if !c.readOne() {
			c.shutdown()
			done()
			return
		}
	}
	go c.readLoop(done)
}

// readLoop reads the initialised connection until it ends. While the
// connection is idle it only waits for its first byte (Peek), the shallowest
// wait there is, so the goroutine every idle connection keeps has the
// smallest stack; reading and handling the message take a goroutine of
// their own, in turn.
func (c *conn) readLoop(done func()) {
	defer done()
	defer c.shutdown()
	handled := make(chan bool)
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.peeking = true
		c.mu.Unlock()
		_, err := c.br.Peek(1)
		c.mu.Lock()
		c.peeking = false
		pc := c.pendingClose
		c.mu.Unlock()
		if pc != nil {
			// close woke the wait: the close handshake reads the
			// connection here, where nothing else reads it.
			_ = c.q.SetReadDeadline(time.Time{})
			_ = c.ws.Close(pc.code, pc.reason)
			close(c.closeHS)
			return
		}
		if err != nil {
			return
		}
		go func() { handled <- c.readOne() }()
		if !<-handled {
			return
		}
	}
}

// readOne reads and handles one message; false ends the connection.
func (c *conn) readOne() bool {
	_, data, err := c.ws.Read(context.Background())
	return err == nil && c.handle(data)
}

// message is a message of either subprotocol.
type message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// handle acts on one client message; false ends the connection.
func (c *conn) handle(data []byte) bool {
	var m message
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		c.refuse("Invalid message received")
		return false
	}
	c.mu.Lock()
	inited := c.inited
	c.mu.Unlock()
	switch m.Type {
	case "connection_init":
		if inited {
			c.close(CloseTooManyInitialise, "Too many initialisation requests")
			return false
		}
		return c.init(m.Payload)
	case c.proto.subscribe:
		if !inited {
			c.close(CloseUnauthorized, "Unauthorized")
			return false
		}
		return c.subscribe(m.ID, m.Payload)
	case c.proto.stop:
		c.stop(m.ID)
	case "ping":
		if c.proto == transportWS {
			_ = c.write(frame("pong", nil, payloadOrNil(m.Payload)))
		}
	case "pong":
	case "connection_terminate":
		if c.proto == graphqlWS {
			c.close(websocket.StatusNormalClosure, "terminated")
			return false
		}
		c.refuse("Unexpected message connection_terminate")
		return false
	default:
		c.refuse("Unexpected message " + m.Type)
		return false
	}
	return true
}

// refuse closes the connection for a message the protocol does not allow.
func (c *conn) refuse(reason string) {
	if c.proto == graphqlWS {
		_ = c.write(frame("connection_error", nil, errorPayload(reason)))
		c.close(websocket.StatusProtocolError, "unexpected message")
		return
	}
	c.close(CloseBadRequest, reason)
}

func errorPayload(msg string) []byte {
	b, _ := json.Marshal(&gqlerror.Error{Message: msg})
	return b
}

// init authenticates the connection and acknowledges it.
func (c *conn) init(payload json.RawMessage) bool {
	var p map[string]any
	if len(payload) > 0 && !bytes.Equal(payload, []byte("null")) {
		if err := rawtext.JSON(payload); err != nil {
			c.refuse("Invalid connection_init payload: not valid text")
			return false
		}
		if err := json.Unmarshal(payload, &p); err != nil {
			c.refuse("Invalid connection_init payload")
			return false
		}
	}
	ctx := c.ctx
	if c.t.cfg.Init != nil {
		var code int
		var err error
		ctx, code, err = c.t.cfg.Init(c.ctx, p)
		if err != nil {
			if c.proto == graphqlWS {
				_ = c.write(frame("connection_error", nil, errorPayload(err.Error())))
			}
			c.close(websocket.StatusCode(code), "terminated")
			return false
		}
	}
	c.mu.Lock()
	c.ctx, c.inited = ctx, true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	// From now on the end of the connection's context (a revoked
	// credential, a shutdown) closes it.
	c.stopDone = context.AfterFunc(ctx, func() { c.closeForContext(ctx) })
	c.mu.Unlock()
	_ = c.write(frame("connection_ack", nil, nil))
	if c.proto == graphqlWS && c.t.cfg.KeepAlive > 0 {
		_ = c.write(frame("ka", nil, nil))
		c.keepAlive()
	}
	return true
}

// keepAlive sends a graphql-ws "ka" every KeepAlive, from a timer: an idle
// connection has no goroutine waiting for it.
func (c *conn) keepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.timer = time.AfterFunc(c.t.cfg.KeepAlive, func() {
		if c.write(frame("ka", nil, nil)) == nil {
			c.keepAlive()
		}
	})
}

// subscribe starts an operation. false ends the connection (a duplicate id).
func (c *conn) subscribe(id string, payload json.RawMessage) bool {
	start := graphql.Now()
	c.mu.Lock()
	if _, dup := c.ops[id]; dup && c.proto == transportWS {
		c.mu.Unlock()
		c.close(CloseSubscriberExists, fmt.Sprintf("Subscriber for %s already exists", id))
		return false
	}
	old := c.ops[id] // graphql-ws: a newer start replaces the older
	octx, cancel := context.WithCancel(c.ctx)
	qid := quoteID(id)
	op := &operation{id: id, qid: qid, cancel: cancel,
		next: messageStart(c.proto.next, qid)}
	c.ops[id] = op
	c.mu.Unlock()
	if old != nil {
		c.leave(old)
	}

	go c.run(graphql.StartOperationTrace(octx), op, payload, start)
	return true
}

// run executes one operation. A subscription that joins a cohort returns
// at once: the cohort sends its messages from then on.
func (c *conn) run(ctx context.Context, op *operation, payload json.RawMessage, start time.Time) {
	handedOver := false // to a cohort, or already ended
	defer func() {
		if r := recover(); r != nil {
			c.t.cfg.Logger.Error("websocket operation panicked", "panic", r)
			c.endWithErrors(op, gqlerror.List{{Message: "internal system error"}})
			return
		}
		if !handedOver {
			c.end(op, true)
		}
	}()
	if c.t.cfg.Authorize != nil {
		if refusal, then := c.t.cfg.Authorize(ctx); refusal != nil {
			c.endWithErrors(op, gqlerror.List{refusal})
			handedOver = true
			if then != nil {
				then() // after the error is queued: a close frame follows it
			}
			return
		}
	}
	if err := rawtext.JSON(payload); err != nil {
		// encoding/json would turn the bad text into U+FFFD unseen.
		c.endWithErrors(op, gqlerror.List{textError(err)})
		handedOver = true
		return
	}
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		c.endWithErrors(op, gqlerror.List{{Message: "invalid json"}})
		handedOver = true
		return
	}
	// No params.Headers: nothing reads them, and an idle connection would
	// keep its upgrade request's headers for its whole life.
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.endWithErrors(op, resp.Errors)
			handedOver = true
			return
		}
		c.send(ctx, op, &graphql.Response{Errors: errs})
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	m := cohort.NewMember(ctx, &memberSink{c: c, op: op})
	responses, ctx := c.exec.DispatchOperation(cohort.WithMember(ctx, m), rc)
	if m.Tapped() {
		handedOver = true
		c.t.cfg.Cohorts.Join(m, responses)
		c.mu.Lock()
		op.member = m // from now on, whatever ends op takes m out (leave)
		c.mu.Unlock()
		if ctx.Err() != nil { // op ended before it had its member
			c.t.cfg.Cohorts.Leave(m)
		}
		return
	}
	for {
		resp := responses(ctx)
		if resp == nil {
			return
		}
		if !c.send(ctx, op, resp) {
			return
		}
	}
}

// send writes one response of op, waiting for room. It reports false when
// the connection failed or the operation ended.
func (c *conn) send(ctx context.Context, op *operation, resp *graphql.Response) bool {
	if ctx.Err() != nil {
		return false
	}
	if len(resp.Errors) == 0 && len(resp.Extensions) == 0 && resp.Data != nil {
		// Data is already encoded: written as it is, not encoded again.
		return c.q.WriteFrame(op.next, dataOpen, resp.Data, dataClose) == nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		c.t.cfg.Logger.Error("websocket response not encodable", "err", err)
		return false
	}
	return c.q.WriteFrame(op.next, b, frameEnd) == nil
}

// end removes op and, unless the client ended it or the connection is
// closing, tells the client it is complete.
func (c *conn) end(op *operation, complete bool) {
	if c.finish(op) && complete {
		_ = c.write(frame("complete", op.qid, nil))
	}
}

// endWithErrors ends op with an error message instead of complete.
func (c *conn) endWithErrors(op *operation, errs gqlerror.List) {
	if !c.finish(op) {
		return
	}
	b, _ := json.Marshal(errs)
	_ = c.write(frame("error", op.qid, b))
	if c.proto == graphqlWS { // its clients wait for complete after an error too
		_ = c.write(frame("complete", op.qid, nil))
	}
}

// finish removes op, cancels it and takes it out of its cohort. It reports
// whether op's last message is still to be sent: op is the connection's
// current operation under its id, not ended before, and the connection is
// not closing.
func (c *conn) finish(op *operation) bool {
	c.mu.Lock()
	current := c.ops[op.id] == op
	if current {
		delete(c.ops, op.id)
	}
	already := op.ended
	op.ended = true
	closed := c.closed
	c.mu.Unlock()
	c.leave(op)
	return current && !already && !closed
}

// stop ends the operation the client completes (graphql-transport-ws
// complete, graphql-ws stop). graphql-ws clients expect the complete the
// server sends; a graphql-transport-ws client that completed an operation
// gets nothing more for it, so a later operation under the same id is never
// taken for it.
func (c *conn) stop(id string) {
	c.mu.Lock()
	op := c.ops[id]
	c.mu.Unlock()
	if op != nil {
		c.end(op, c.proto == graphqlWS)
	}
}

// write queues one frame, waiting for room.
func (c *conn) write(frame [][]byte) error {
	return c.q.WriteFrame(frame...)
}

// closeForContext closes the connection whose context ended, first ending
// each operation in flight with EndError's error, when there is one.
func (c *conn) closeForContext(ctx context.Context) {
	if c.t.cfg.EndError != nil {
		if e := c.t.cfg.EndError(ctx); e != nil {
			c.mu.Lock()
			ops := make([]*operation, 0, len(c.ops))
			for _, op := range c.ops {
				ops = append(ops, op)
			}
			c.mu.Unlock()
			b, _ := json.Marshal(gqlerror.List{e})
			for _, op := range ops {
				if c.finish(op) {
					// Without waiting: a client too slow to take its
					// errors still gets its close.
					c.q.TryWriteFrame(frame("error", op.qid, b)...)
					if c.proto == graphqlWS {
						c.q.TryWriteFrame(frame("complete", op.qid, nil)...)
					}
				}
			}
		}
	}
	code, reason := websocket.StatusNormalClosure, "terminated"
	if c.t.cfg.CloseCode != nil {
		var n int
		n, reason = c.t.cfg.CloseCode(ctx)
		code = websocket.StatusCode(n)
	}
	c.close(code, reason)
}

// close sends the close frame (the library waits for the client's answer)
// and ends every operation.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	done := make(chan struct{})
	c.closeHS = done
	peeking := c.peeking
	if peeking {
		c.pendingClose = &closeFrame{code, reason}
	}
	c.mu.Unlock()
	c.cancelAll()
	if peeking {
		// The library's close handshake reads the connection, which
		// readLoop's wait reads too: wake the wait, and readLoop closes.
		_ = c.q.SetReadDeadline(time.Now())
		return
	}
	go func() { // a read in flight sees the client's answer, or its end
		defer close(done)
		_ = c.ws.Close(code, reason)
	}()
}

// shutdown runs when the read loop ends: whatever ended it, every
// operation and timer stops and the connection is closed.
func (c *conn) shutdown() {
	c.mu.Lock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.stopDone != nil {
		c.stopDone()
	}
	hs := c.closeHS
	c.mu.Unlock()
	c.cancelAll()
	if hs != nil {
		<-hs // bounded by the library's own close timeout
	}
	_ = c.ws.CloseNow()
}

func (c *conn) cancelAll() {
	c.mu.Lock()
	ops := make([]*operation, 0, len(c.ops))
	for _, op := range c.ops {
		ops = append(ops, op)
	}
	clear(c.ops)
	c.mu.Unlock()
	for _, op := range ops {
		c.leave(op)
	}
}

// leave cancels op and takes it out of its cohort, if it is in one.
func (c *conn) leave(op *operation) {
	op.cancel()
	c.mu.Lock()
	m := op.member
	c.mu.Unlock()
	if m != nil {
		c.t.cfg.Cohorts.Leave(m)
	}
}

// memberSink is how a cohort writes to one of its members on this
// connection.
type memberSink struct {
	c  *conn
	op *operation
}

func (s *memberSink) Offer(resp *graphql.Response) bool {
	if len(resp.Errors) == 0 && len(resp.Extensions) == 0 && resp.Data != nil {
		// The shared case: the data as it is, no encoding per member.
		return s.c.q.TryWriteFrame(s.op.next, dataOpen, resp.Data, dataClose)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return true // dropped, as send does
	}
	return s.c.q.TryWriteFrame(s.op.next, b, frameEnd)
}

var (
	dataOpen  = []byte(`{"data":`)
	dataClose = []byte(`}}`)
)

func (s *memberSink) Send(ctx context.Context, resp *graphql.Response) bool {
	return s.c.send(ctx, s.op, resp)
}

func (s *memberSink) End() { s.c.end(s.op, true) }

// textError is the error of a message whose text decoding would alter.
func textError(err error) *gqlerror.Error {
	e := &gqlerror.Error{Message: err.Error(), Extensions: map[string]any{"code": "BAD_USER_INPUT", "reason": "INVALID_TEXT"}}
	var ie *ipa.Error
	if errors.As(err, &ie) {
		e.Message, e.Extensions["code"], e.Extensions["reason"] = ie.Message, ie.Code, ie.Reason
	}
	return e
}

// payloadOrNil drops an absent or null payload.
func payloadOrNil(p json.RawMessage) []byte {
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return nil
	}
	return p
}
