package main

import (
	"net/url"
	"testing"

	"github.com/ipa-dev/ipa/internal/faultproxy"
)

// proxiedCluster is a cluster whose servers each reach the database through
// a proxy of their own, so one server at a time can be cut from it, its
// link delayed or stalled, while the others keep theirs.
type proxiedCluster struct {
	*cluster
	proxies map[string]*faultproxy.Proxy
}

func newProxiedCluster(t testing.TB) *proxiedCluster {
	return &proxiedCluster{cluster: newCluster(t), proxies: map[string]*faultproxy.Proxy{}}
}

// start runs `ipa serve` as instance id with its own proxy to the database
// (the same proxy when the instance is started again: see restart).
func (pc *proxiedCluster) start(id string, extra ...string) *server {
	t := pc.t
	t.Helper()
	u, err := url.Parse(pc.db)
	if err != nil {
		t.Fatalf("database url: %v", err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	// Registered before the home's cleanup, so it runs after it: the
	// servers die before their links do.
	t.Cleanup(func() { _ = p.Close() })
	pc.proxies[id] = p
	u.Host = p.Addr()
	h := newHome(t, "--instance-id", id, "--lease-ttl", testTTL.String(), "--heartbeat-interval", testHeartbeat.String())
	h.db = u.String()
	pc.homes[id] = h
	s := h.start(extra...)
	pc.srv[id] = s
	return s
}

// restart starts instance id again on its home (database through its
// proxy, data dir) after it died.
func (pc *proxiedCluster) restart(id string, extra ...string) *server {
	pc.t.Helper()
	s := pc.homes[id].start(extra...)
	pc.srv[id] = s
	return s
}
