// Package client talks to an ipa server through its public GraphQL API only:
// operations over HTTP POST, subscriptions over WebSocket with the
// graphql-transport-ws protocol. It is what the `ipa task` commands use; it
// knows the transport and the error shape, not the schema.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Codes the client itself gives to failures that never reached GraphQL; the
// server's own codes (extensions.code) pass through unchanged.
const (
	CodeUnavailable     = "UNAVAILABLE"
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeNotFound        = "NOT_FOUND"
	CodeBadUserInput    = "BAD_USER_INPUT"
	CodeRateLimited     = "RATE_LIMITED"
	CodeInternal        = "INTERNAL_SERVER_ERROR"
)

// Error is a failure with the contract's code: the first GraphQL error of a
// response, a transport refusal, or (code UNAVAILABLE) a server that could
// not be reached.
type Error struct {
	Code          string
	Reason        string
	Message       string
	CorrelationID string
	// Err is the underlying cause for failures that happened in the client
	// (network, decoding); nil for errors the server reported.
	Err error
}

func (e *Error) Error() string {
	code := e.Code
	if e.Reason != "" {
		code += "/" + e.Reason
	}
	msg := e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s (%s)", msg, code)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of err when it is (or wraps) an *Error, else "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Client is one server and credential. Its zero value is not usable; use New.
type Client struct {
	endpoint string // http(s)://host[:port]/graphql
	token    string
	http     *http.Client
	ws       *http.Client // for the WebSocket handshake: nil, or the Unix socket's transport without a timeout
}

// unixScheme names a server's Unix socket (ipa serve --socket):
// unix:///run/ipa.sock.
const unixScheme = "unix://"

// New returns a client for server (a base URL such as http://127.0.0.1:8080,
// a host:port, the full /graphql URL, or unix:///path/to/socket) sending
// token as a bearer token when it is not empty. Each HTTP operation may take
// at most timeout (0: no limit). Returns an error when server is not a
// usable URL.
func New(server, token string, timeout time.Duration) (*Client, error) {
	if path, ok := strings.CutPrefix(strings.TrimSpace(server), unixScheme); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("server address %q: a Unix socket is unix:///absolute/path", server)
		}
		var d net.Dialer
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		// The host is a loopback name, which the server's host check
		// accepts; the connection goes to the socket whatever it says.
		return &Client{endpoint: "http://localhost/graphql", token: token,
			http: &http.Client{Timeout: timeout, Transport: tr}, ws: &http.Client{Transport: tr}}, nil
	}
	endpoint, err := Endpoint(server)
	if err != nil {
		return nil, err
	}
	return &Client{endpoint: endpoint, token: token, http: &http.Client{Timeout: timeout}}, nil
}

// Endpoint turns a server address into its /graphql URL.
func Endpoint(server string) (string, error) {
	s := strings.TrimSpace(server)
	if s == "" {
		return "", errors.New("the server address is empty")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("server address %q: %w", server, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("server address %q: the scheme must be http or https", server)
	}
	if u.Host == "" {
		return "", fmt.Errorf("server address %q has no host", server)
	}
	if !strings.HasSuffix(u.Path, "/graphql") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/graphql"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Endpoint returns the /graphql URL the client posts to.
func (c *Client) Endpoint() string { return c.endpoint }

// response is the GraphQL response shape, also used by transport refusals.
type response struct {
	Data       json.RawMessage `json:"data"`
	Errors     []gqlError      `json:"errors"`
	Extensions struct {
		CorrelationID string `json:"correlationId"`
	} `json:"extensions"`
}

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code          string `json:"code"`
		Reason        string `json:"reason"`
		CorrelationID string `json:"correlationId"`
	} `json:"extensions"`
}

func (g gqlError) toError(correlationID string) *Error {
	e := &Error{Code: g.Extensions.Code, Reason: g.Extensions.Reason, Message: g.Message, CorrelationID: g.Extensions.CorrelationID}
	if e.Code == "" {
		e.Code = CodeInternal
	}
	if e.CorrelationID == "" {
		e.CorrelationID = correlationID
	}
	return e
}

// Do runs one query or mutation and returns its data object. Any GraphQL
// error makes it fail: it returns an *Error carrying the first error's code,
// reason and message. A server that cannot be reached, or answers with
// something other than a GraphQL response, is an *Error with code
// UNAVAILABLE (or the code the HTTP status implies).
func (c *Client) Do(ctx context.Context, query string, vars map[string]any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, &Error{Code: CodeBadUserInput, Message: "cannot encode the request", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "cannot build the request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json, application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "cannot reach the server at " + c.endpoint, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "the server's answer was cut off", Err: err}
	}
	var out response
	if err := json.Unmarshal(raw, &out); err != nil || (out.Data == nil && len(out.Errors) == 0) {
		return nil, statusError(resp.StatusCode, c.endpoint)
	}
	if len(out.Errors) > 0 {
		return nil, out.Errors[0].toError(out.Extensions.CorrelationID)
	}
	if resp.StatusCode/100 != 2 {
		return nil, statusError(resp.StatusCode, c.endpoint)
	}
	return out.Data, nil
}

// statusError is the error for an HTTP answer without a GraphQL body.
func statusError(status int, endpoint string) *Error {
	msg := fmt.Sprintf("the server at %s answered HTTP %d without a GraphQL response", endpoint, status)
	code := CodeInternal
	switch {
	case status == http.StatusUnauthorized:
		code = CodeUnauthenticated
	case status == http.StatusForbidden || status == http.StatusMisdirectedRequest:
		code = CodeForbidden
	case status == http.StatusNotFound:
		code = CodeNotFound
		msg = fmt.Sprintf("no GraphQL API at %s (HTTP 404)", endpoint)
	case status == http.StatusTooManyRequests:
		code = CodeRateLimited
	case status >= 500, status < 200:
		code = CodeUnavailable
	}
	return &Error{Code: code, Message: msg}
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the method
// and URL the message already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
