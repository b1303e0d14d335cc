// Package podsock is the conversation socket of an exec pod: the exec
// runtime serves it at $IPA_POD_SOCKET for its command, and `ipa pod ask` /
// `ipa pod messages` are its clients, so any shell command can ask a person
// and read the messages sent to its task. Each connection carries one
// request (a JSON line) and its answer (JSON lines), and the runtime proxies
// it to its host service (sdk/pod Host.Ask, Host.Messages).
package podsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// Env names the variable that holds the socket's path; BinEnv the ipa
// binary's.
const (
	Env    = "IPA_POD_SOCKET"
	BinEnv = "IPA_BIN"
)

// Request is what a client asks.
type Request struct {
	Op        string   `json:"op"` // "ask" or "messages"
	Key       string   `json:"key,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	Prompt    string   `json:"prompt,omitempty"`
	Options   []string `json:"options,omitempty"`
	TimeoutMs int64    `json:"timeoutMs,omitempty"`
	Follow    bool     `json:"follow,omitempty"`
}

// Answer is how an ask ended (or its error).
type Answer struct {
	RequestID  string `json:"requestId,omitempty"`
	State      string `json:"state,omitempty"`
	Answer     string `json:"answer,omitempty"`
	Approved   bool   `json:"approved,omitempty"`
	Comment    string `json:"comment,omitempty"`
	AnsweredBy string `json:"answeredBy,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Message is one message line of `ipa pod messages`.
type Message struct {
	ID     string          `json:"id"`
	Text   string          `json:"text"`
	Data   json.RawMessage `json:"data"` // null when the message has none
	SentBy string          `json:"sentBy"`
	SentAt time.Time       `json:"sentAt"`
}

// Server serves one pod's socket. Messages are pulled from the host only
// once a command first reads them (so a command that never reads leaves
// them undelivered); from then on every message the pod receives is queued
// here and each read takes the ones it has not taken, so every message is
// printed once per run.
type Server struct {
	host pod.Conversing
	ln   net.Listener
	dir  string
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	pulling bool
	queue   []Message
	taken   int
	changed chan struct{}
}

// maxPathLen keeps the socket path within sun_path (108 bytes on Linux).
const maxPathLen = 100

// Listen serves a socket for host in a fresh directory (mode 0700, socket
// 0600) under base, or under the system's temporary directory when base's
// path would be too long for a socket.
func Listen(host pod.Conversing, base string) (*Server, error) {
	if base == "" || len(filepath.Join(base, ".ipa-pod-XXXXXXXXXX", "pod.sock")) > maxPathLen {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, ".ipa-pod-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "pod.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{host: host, ln: ln, dir: dir, ctx: ctx, stop: cancel, changed: make(chan struct{})}
	s.wg.Go(s.accept)
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.ln.Addr().String() }

// Close stops serving, ends every open request and removes the socket.
// Safe on nil.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.stop()
	_ = s.ln.Close()
	s.wg.Wait()
	_ = os.RemoveAll(s.dir)
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() {
			defer c.Close()
			s.serve(c)
		})
	}
}

func (s *Server) serve(c net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	r := bufio.NewReader(io.LimitReader(c, 1<<20))
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return
	}
	// The client closing its end (^C) ends the request.
	go func() {
		_, _ = r.ReadByte()
		cancel()
	}()
	var req Request
	enc := json.NewEncoder(c)
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(Answer{Error: "bad request"})
		return
	}
	switch req.Op {
	case "ask":
		a, err := s.host.Ask(ctx, pod.AskRequest{Key: req.Key, Kind: req.Kind, Prompt: req.Prompt, Options: req.Options,
			Timeout: time.Duration(req.TimeoutMs) * time.Millisecond})
		if err != nil {
			_ = enc.Encode(Answer{Error: err.Error()})
			return
		}
		_ = enc.Encode(Answer{RequestID: a.RequestID, State: a.State, Answer: a.Text, Approved: a.Approved, Comment: a.Comment, AnsweredBy: a.AnsweredBy})
	case "messages":
		s.pull()
		for {
			s.mu.Lock()
			next := s.queue[s.taken:]
			s.taken = len(s.queue)
			ch := s.changed
			s.mu.Unlock()
			for _, m := range next {
				if err := enc.Encode(m); err != nil {
					return
				}
			}
			if !req.Follow {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	default:
		_ = enc.Encode(Answer{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

// settle is how long a first read waits for the messages already sent to
// arrive from the host, so `ipa pod messages` without --follow prints them.
const settle = time.Second

// pull starts receiving messages from the host, once.
func (s *Server) pull() {
	s.mu.Lock()
	if s.pulling {
		s.mu.Unlock()
		return
	}
	s.pulling = true
	s.mu.Unlock()
	first := make(chan struct{})
	var once sync.Once
	s.wg.Go(func() {
		err := s.host.Messages(s.ctx, func(m pod.Message) error {
			s.mu.Lock()
			var data json.RawMessage
			if len(m.Data) > 0 {
				data = m.Data // an empty one stays nil, which prints as null
			}
			s.queue = append(s.queue, Message{ID: m.ID, Text: m.Text, Data: data, SentBy: m.SentBy, SentAt: m.SentAt})
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return nil
		})
		once.Do(func() { close(first) })
		if err != nil && !errors.Is(err, context.Canceled) {
			pod.Logger().Warn("pod messages", "err", err)
		}
	})
	// Wait briefly for the backlog: it comes first on the stream.
	select {
	case <-first:
	case <-time.After(settle):
	}
}

// Call sends req to the socket at path and returns a decoder of the answer
// lines; close the connection when done.
func Call(ctx context.Context, path string, req Request) (net.Conn, *json.Decoder, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, nil, err
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	return c, json.NewDecoder(c), nil
}
