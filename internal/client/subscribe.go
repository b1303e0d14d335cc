package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Protocol is the WebSocket subprotocol the client speaks.
const Protocol = "graphql-transport-ws"

// Close codes of graphql-transport-ws (and of the server's refusals) that
// carry a meaning of their own.
const (
	closeBadRequest   = 4400
	closeUnauthorized = 4401
	closeForbidden    = 4403
	closeInitTimeout  = 4408
	closeTooManyInits = 4429
)

const (
	// maxMessageBytes bounds one incoming message: a pod_output event may
	// hold a thousand 8 KiB lines.
	maxMessageBytes = 64 << 20
	// controlTimeout bounds the small writes (pong, complete) and the wait
	// for connection_ack.
	controlTimeout = 10 * time.Second
)

// wsMessage is one graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Subscription is one GraphQL subscription on its own WebSocket connection.
// Next and Close may be called from different goroutines; Next from one at
// a time.
type Subscription struct {
	conn *websocket.Conn
	id   string

	msgs    chan wsMessage // next, error and complete, in arrival order
	readErr error          // why the reader stopped; set before msgs is closed
	stop    chan struct{}  // closed by Close: the reader stops delivering
	done    chan struct{}  // closed when the reader has returned

	finished  atomic.Bool // the server ended the operation (complete or error)
	closeOnce sync.Once
}

// Subscribe opens a WebSocket to the server, authenticates in
// connection_init with {"Authorization": "Bearer …"} (and on the upgrade
// request, so a bad token is refused with the HTTP error), and starts the
// subscription. Returns an *Error: UNAVAILABLE when the server cannot be
// reached, UNAUTHENTICATED or FORBIDDEN when it refuses the credential.
// The caller must Close the subscription.
func (c *Client) Subscribe(ctx context.Context, query string, vars map[string]any) (*Subscription, error) {
	wsURL := "ws" + strings.TrimPrefix(c.endpoint, "http")
	header := http.Header{}
	if c.token != "" {
		header.Set("Authorization", "Bearer "+c.token)
	}
	conn, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		Subprotocols: []string{Protocol},
		HTTPHeader:   header,
		HTTPClient:   c.ws, // nil: the library's default
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, refusal(resp, c.endpoint)
		}
		return nil, &Error{Code: CodeUnavailable, Message: "cannot reach the server at " + c.endpoint, Err: err}
	}
	if conn.Subprotocol() != Protocol {
		_ = conn.Close(websocket.StatusProtocolError, "")
		return nil, &Error{Code: CodeUnavailable, Message: "the server at " + c.endpoint + " does not speak " + Protocol}
	}
	conn.SetReadLimit(maxMessageBytes)
	s := &Subscription{conn: conn, id: "1", msgs: make(chan wsMessage, 16), stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.init(ctx, c.token); err != nil {
		_ = conn.CloseNow()
		return nil, err
	}
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		_ = conn.CloseNow()
		return nil, &Error{Code: CodeBadUserInput, Message: "cannot encode the subscription", Err: err}
	}
	if err := s.write(ctx, wsMessage{ID: s.id, Type: "subscribe", Payload: payload}); err != nil {
		_ = conn.CloseNow()
		return nil, connError(err)
	}
	go s.read()
	return s, nil
}

// refusal turns a refused upgrade into an *Error from its GraphQL-shaped
// body, or from its status.
func refusal(resp *http.Response, endpoint string) error {
	if resp.Body != nil {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		var out response
		if json.Unmarshal(raw, &out) == nil && len(out.Errors) > 0 {
			return out.Errors[0].toError(out.Extensions.CorrelationID)
		}
	}
	return statusError(resp.StatusCode, endpoint)
}

// init sends connection_init and waits for connection_ack, answering pings.
func (s *Subscription) init(ctx context.Context, token string) error {
	payload := map[string]string{}
	if token != "" {
		payload["Authorization"] = "Bearer " + token
	}
	raw, _ := json.Marshal(payload)
	if err := s.write(ctx, wsMessage{Type: "connection_init", Payload: raw}); err != nil {
		return connError(err)
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	for {
		m, err := s.readMessage(ctx)
		if err != nil {
			return connError(err)
		}
		switch m.Type {
		case "connection_ack":
			return nil
		case "ping":
			if err := s.write(ctx, wsMessage{Type: "pong"}); err != nil {
				return connError(err)
			}
		case "pong":
		case "connection_error", "error":
			return payloadError(m.Payload)
		default:
			return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("unexpected %q before connection_ack", m.Type)}
		}
	}
}

// read runs until the connection ends: it answers pings and hands every
// other message to Next.
func (s *Subscription) read() {
	defer close(s.done)
	defer close(s.msgs)
	for {
		// The connection, not a context, bounds this read: a cancelled
		// read context would tear the socket down without a clean close.
		m, err := s.readMessage(context.Background())
		if err != nil {
			s.readErr = err
			return
		}
		switch m.Type {
		case "ping":
			ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
			err := s.write(ctx, wsMessage{Type: "pong", Payload: m.Payload})
			cancel()
			if err != nil {
				s.readErr = err
				return
			}
			continue
		case "pong":
			continue
		case "complete", "error":
			s.finished.Store(true)
		}
		select {
		case s.msgs <- m:
		case <-s.stop:
			return
		}
	}
}

func (s *Subscription) readMessage(ctx context.Context) (wsMessage, error) {
	_, raw, err := s.conn.Read(ctx)
	if err != nil {
		return wsMessage{}, err
	}
	var m wsMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return wsMessage{}, fmt.Errorf("a message that is not JSON: %w", err)
	}
	return m, nil
}

func (s *Subscription) write(ctx context.Context, m wsMessage) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.conn.Write(ctx, websocket.MessageText, raw)
}

// Next returns the data object of the next result. It returns io.EOF when
// the server completed the subscription, an *Error when the server sent an
// error (or a result with errors) or the connection ended, and ctx.Err()
// when ctx ends first.
func (s *Subscription) Next(ctx context.Context) (json.RawMessage, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case m, ok := <-s.msgs:
		if !ok {
			return nil, connError(s.readErr)
		}
		switch m.Type {
		case "next":
			var out response
			if err := json.Unmarshal(m.Payload, &out); err != nil {
				return nil, &Error{Code: CodeInternal, Message: "a result that is not a GraphQL response", Err: err}
			}
			if len(out.Errors) > 0 {
				return nil, out.Errors[0].toError(out.Extensions.CorrelationID)
			}
			return out.Data, nil
		case "error":
			return nil, payloadError(m.Payload)
		case "complete":
			return nil, io.EOF
		default:
			return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("unexpected message %q", m.Type)}
		}
	}
}

// Close ends the subscription cleanly: complete (unless the server already
// ended it), then a normal WebSocket close. It waits for the reader to stop.
func (s *Subscription) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		if !s.finished.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
			_ = s.write(ctx, wsMessage{ID: s.id, Type: "complete"})
			cancel()
		}
		err = s.conn.Close(websocket.StatusNormalClosure, "")
		<-s.done
		if websocket.CloseStatus(err) != -1 { // the peer closed first: still clean
			err = nil
		}
	})
	return err
}

// payloadError decodes an error message's payload: a list of GraphQL errors
// (or, from older servers, one error object).
func payloadError(raw json.RawMessage) error {
	var list []gqlError
	if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
		return list[0].toError("")
	}
	var one gqlError
	if json.Unmarshal(raw, &one) == nil && one.Message != "" {
		return one.toError("")
	}
	return &Error{Code: CodeInternal, Message: "the server ended the subscription with an error"}
}

// connError describes why a connection ended, with the code its close
// status implies.
func connError(err error) error {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return &Error{Code: CodeUnavailable, Message: "lost the connection to the server", Err: err}
	}
	msg := ce.Reason
	if msg == "" {
		msg = fmt.Sprintf("the server closed the connection (%d)", ce.Code)
	}
	code := CodeUnavailable
	switch ce.Code {
	case closeUnauthorized:
		code = CodeUnauthenticated
	case closeForbidden:
		code = CodeForbidden
	case closeBadRequest:
		code = CodeBadUserInput
	case closeTooManyInits, closeInitTimeout:
		code = CodeInternal
	}
	return &Error{Code: code, Message: msg}
}
