package httpserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// graphql-transport-ws: "If there is already an active subscriber for an
// operation matching the provided ID, regardless of the operation type, the
// server must close the socket immediately with the event 4409: Subscriber
// for <id> already exists." gqlgen's transport does not check: it starts a
// second operation under the id and loses the first one's cancel function,
// so that one runs, unstoppable, until the socket closes. uniqueOpsConn
// keeps the ids of the operations in flight on one connection and closes
// with 4409 on a subscribe that reuses one.
//
// An id is in flight from the client's subscribe until the client's
// complete or the server's complete or error for it. gqlgen ends every
// operation with a message of its own (complete, or error), also one the
// client completed; that echo is counted and swallowed, so it cannot free the
// id of a later operation the client started under the same id. It can never refuse a
// legitimate subscribe: an id stays in flight only while neither side has
// ended its operation.

const (
	subprotocolTransportWS = "graphql-transport-ws"
	closeSubscriberExists  = 4409
)

// uniqueOpsConn is a graphql-transport-ws connection that refuses a
// subscribe reusing the id of an operation in flight.
type uniqueOpsConn struct {
	wrappedConn

	mu  sync.Mutex
	ops map[string]*opState
}

// opState is what one operation id is doing on the connection.
type opState struct {
	active bool // started by the client, ended by neither side
	echoes int  // server completes still due for operations the client completed
}

func newUniqueOpsConn(c transport.WebsocketConn) *uniqueOpsConn {
	return &uniqueOpsConn{wrappedConn: wrappedConn{c}, ops: map[string]*opState{}}
}

// clientSent records a client's message; it reports whether it is a
// subscribe reusing an id in flight.
func (c *uniqueOpsConn) clientSent(typ, id string) (dup bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := c.ops[id]
	switch typ {
	case "subscribe":
		if op == nil {
			op = &opState{}
			c.ops[id] = op
		}
		dup = op.active
		op.active = true
	case "complete":
		if op != nil && op.active {
			op.active = false
			op.echoes++
		}
	}
	return dup
}

// serverSent records the server's complete or error for id.
func (c *uniqueOpsConn) serverSent(typ, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := c.ops[id]
	if op == nil {
		return
	}
	// gqlgen ends an operation it runs with one message, complete or (when
	// the subscription failed) error; one it refuses up front with error
	// and then complete. Either end pays an echo the client is owed first.
	if op.echoes > 0 {
		op.echoes--
	} else {
		op.active = false
	}
	if !op.active && op.echoes == 0 {
		delete(c.ops, id)
	}
}

// errSubscriberExists ends the transport's read loop quietly (it treats
// net.ErrClosed as a connection it closed itself).
var errSubscriberExists = fmt.Errorf("subscriber already exists: %w", net.ErrClosed)

func (c *uniqueOpsConn) NextReader() (int, io.Reader, error) {
	typ, r, err := c.WebsocketConn.NextReader()
	if err != nil {
		return typ, r, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return typ, nil, err
	}
	var m struct{ ID, Type string }
	if json.Unmarshal(data, &m) == nil && m.ID != "" && c.clientSent(m.Type, m.ID) {
		_ = c.WebsocketConn.WriteClose(closeSubscriberExists, closeReason("Subscriber for "+m.ID+" already exists"))
		return typ, nil, errSubscriberExists
	}
	return typ, bytes.NewReader(data), nil
}

// WriteJSON records an operation the server ends (complete or error)
// before the client can read that it ended and reuse the id.
func (c *uniqueOpsConn) WriteJSON(v any) error {
	if id, typ := messageIDType(v); id != "" && (typ == "complete" || typ == "error") {
		c.serverSent(typ, id)
	}
	return c.WebsocketConn.WriteJSON(v)
}

// messageIDType reads the ID and Type fields of the transport's outgoing
// message (a struct the transport does not export).
func messageIDType(v any) (id, typ string) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if rv.Kind() != reflect.Struct {
		return "", ""
	}
	if f := rv.FieldByName("ID"); f.IsValid() && f.Kind() == reflect.String {
		id = f.String()
	}
	if f := rv.FieldByName("Type"); f.IsValid() && f.Kind() == reflect.String {
		typ = f.String()
	}
	return id, typ
}

// closeReason fits a close reason into the 123 bytes a close frame allows.
func closeReason(s string) string {
	const limit = 123
	if len(s) <= limit {
		return s
	}
	return s[:limit]
}
