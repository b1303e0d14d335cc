package httpserver

import (
	"net"
	"net/http"
	"strings"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// withHostCheck defends the anonymous local door against DNS rebinding: a
// page on attacker.example whose name now resolves to 127.0.0.1 reaches a
// loopback server as same-origin, with Host: attacker.example. While the door
// is open, only requests naming the server by a loopback name or address, or
// by a name in allowed, are served; the rest get 403 FORBIDDEN. A request
// whose Host is loopback costs nothing here.
func withHostCheck(a *auth.Authenticator, allowed []string, next http.Handler) http.Handler {
	names := make(map[string]bool, len(allowed))
	for _, n := range allowed {
		if n = normalHost(n); n != "" {
			names[n] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := normalHost(r.Host)
		if loopbackHost(host) || names[host] {
			next.ServeHTTP(w, r)
			return
		}
		open, err := a.LocalDoorOpen(r.Context())
		switch {
		case err != nil:
			refuseHost(w, r, http.StatusServiceUnavailable, err)
		case open:
			refuseHost(w, r, http.StatusForbidden, ipa.Errorf(ipa.EFORBIDDEN, "",
				"This server accepts requests without a token, so it answers only to localhost; "+
					"open it as http://localhost:PORT/ or add this name with --allowed-hosts."))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// refuseHost answers with err, under a correlation id like every refusal.
func refuseHost(w http.ResponseWriter, r *http.Request, status int, err error) {
	withCorrelation(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, status, err)
	})).ServeHTTP(w, r)
}

// normalHost returns the host of a Host header or an --allowed-hosts entry,
// lower case, without port or IPv6 brackets.
func normalHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "."), "["), "]")
}

// loopbackHost reports whether host names the loopback interface:
// localhost, *.localhost (RFC 6761 keeps them on loopback), or a loopback
// address.
func loopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
