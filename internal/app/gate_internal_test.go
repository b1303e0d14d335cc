package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A request made while the server is being built is answered by the built
// server once it is ready, and the probes answer at once (a wait that runs
// out: TestGateBeforeAndAfterOpen).
func TestGateHoldsRequestsUntilBuilt(t *testing.T) {
	g := newGate(time.Minute)
	srv := httptest.NewServer(g)
	defer srv.Close()

	if status, body := get(t, srv.URL+"/readyz"); status != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Fatalf("/readyz while building: %d %q", status, body)
	}
	if status, _ := get(t, srv.URL+"/healthz"); status != http.StatusOK {
		t.Fatalf("/healthz while building: %d", status)
	}
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		status, body := get(t, srv.URL+"/graphql")
		got <- answer{status, body}
	}()
	select {
	case a := <-got:
		t.Fatalf("answered before the server was built: %d %q", a.status, a.body)
	case <-time.After(200 * time.Millisecond):
	}
	g.open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "built "+r.URL.Path) }))
	if a := <-got; a.status != http.StatusOK || a.body != "built /graphql" {
		t.Fatalf("held request: %d %q", a.status, a.body)
	}

}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
