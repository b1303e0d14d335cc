// Package loadtest holds what the feed benchmarks' load clients share:
// reading a field out of a GraphQL message without decoding it (so a
// thousand clients in one process spend little CPU per message), lifting
// the open-files limit for many sockets, and reporting latency percentiles.
// It is used by benchmarks only.
package loadtest

import (
	"bytes"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Field returns the raw value of the first scalar field called name in raw
// ("version":12 → 12, "occurredAt":"…" → …), or nil when there is none.
func Field(raw []byte, name string) []byte {
	key := []byte(`"` + name + `":`)
	i := bytes.Index(raw, key)
	if i < 0 {
		return nil
	}
	v := raw[i+len(key):]
	if len(v) > 0 && v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
			return nil
		}
		return v[1 : 1+end]
	}
	end := bytes.IndexAny(v, ",}")
	if end < 0 {
		return nil
	}
	return v[:end]
}

// FieldInt is Field read as an integer (0 when missing or not a number).
func FieldInt(raw []byte, name string) int64 {
	n, _ := strconv.ParseInt(string(Field(raw, name)), 10, 64)
	return n
}

// FieldInts returns every value of an integer or decimal-string field in
// raw, in order (a batch of events carries one per event).
func FieldInts(raw []byte, name string) []int64 {
	key := []byte(`"` + name + `":`)
	var out []int64
	for {
		i := bytes.Index(raw, key)
		if i < 0 {
			return out
		}
		raw = raw[i+len(key):]
		v := raw
		if len(v) > 0 && v[0] == '"' {
			v = v[1:]
		}
		end := 0
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		n, _ := strconv.ParseInt(string(v[:end]), 10, 64)
		out = append(out, n)
	}
}

// RaiseFileLimit lifts the soft open-files limit to the hard one and skips
// the benchmark when that is still below need.
func RaiseFileLimit(tb testing.TB, need uint64) {
	tb.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		tb.Fatalf("getrlimit: %v", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			tb.Fatalf("setrlimit: %v", err)
		}
	}
	if l.Cur < need {
		tb.Skipf("open-files limit %d is below the %d this benchmark holds", l.Cur, need)
	}
}

// ReportLatency sorts d and reports its p50, p99 and max in ms, and how many
// deliveries it holds.
func ReportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		b.Fatal("no deliveries to report")
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	b.ReportMetric(ms(d[len(d)/2]), "p50-ms")
	b.ReportMetric(ms(d[len(d)*99/100]), "p99-ms")
	b.ReportMetric(ms(d[len(d)-1]), "max-ms")
	b.ReportMetric(float64(len(d)), "deliveries")
}
