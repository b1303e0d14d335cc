package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrPrivateAddress is returned for a target on a loopback, private,
// link-local or otherwise internal address while private targets are not
// allowed (SSRF: a webhook must not reach into the server's own network).
var ErrPrivateAddress = errors.New("webhook: target address is private, loopback or link-local")

// cgnat is the shared address space of carrier-grade NAT (RFC 6598), not
// covered by netip's IsPrivate.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// privateAddr reports whether a is not a public unicast address.
func privateAddr(a netip.Addr) bool {
	a = a.Unmap()
	return !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || cgnat.Contains(a)
}

// CheckURL returns a message for the client when raw is not an absolute
// http(s) URL, or when, unless allowPrivate, its host is or resolves to a
// private address (ErrPrivateAddress is wrapped). Dialling checks again
// (see dialControl): a name may resolve differently later.
func CheckURL(ctx context.Context, raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return errors.New("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("url must not contain a user name or password")
	}
	if u.Fragment != "" {
		return errors.New("url must not contain a fragment")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if privateAddr(a) {
			return fmt.Errorf("url host %s: %w", host, ErrPrivateAddress)
		}
		return nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return fmt.Errorf("url host %s: %w", host, ErrPrivateAddress)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("url host %s does not resolve", host)
	}
	for _, a := range addrs {
		if privateAddr(a) {
			return fmt.Errorf("url host %s resolves to %s: %w", host, a, ErrPrivateAddress)
		}
	}
	return nil
}

// dialControl refuses connections to private addresses. It runs after name
// resolution, on the address actually dialled, so a name that resolved to a
// public address at creation and to a private one now (DNS rebinding) is
// still refused.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: dial %s: %w", address, err)
	}
	if privateAddr(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	return nil
}
