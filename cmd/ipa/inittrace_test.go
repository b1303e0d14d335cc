package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// maxInitBytes bounds what one package's init may allocate. Every built-in
// runtime re-executes this binary as `ipa plugin NAME`, and a package's init
// runs whatever command the binary runs, so an eager init is paid by every
// cold pod. The largest today is jinzhu/inflection (GORM's, about 0.56 MB); a
// JSON Schema library that compiled its meta-schemas eagerly cost 1.7 MB.
const maxInitBytes = 1 << 20

var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock, ([0-9]+) bytes, ([0-9]+) allocs$`)

// A plugin process pays no package init that allocates more than
// maxInitBytes (GODEBUG=inittrace=1 of `ipa plugin demo`).
func TestPluginInitCost(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipaBin, "plugin", "demo")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Without go-plugin's handshake cookie the plugin exits at once, with
	// an error; its inits have run by then.
	_ = cmd.Run()
	n, total := 0, int64(0)
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		m := initLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n++
		b, err := strconv.ParseInt(m[3], 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		total += b
		if b > maxInitBytes {
			t.Errorf("init of %s allocates %d bytes (%s allocs, %s ms), over %d: every cold plugin pays it", m[1], b, m[4], m[2], maxInitBytes)
		}
	}
	if n < 50 {
		t.Fatalf("read %d package inits from GODEBUG=inittrace=1, want the whole binary's; stderr:\n%s", n, stderr.String())
	}
	t.Logf("%d package inits, %d bytes in all", n, total)
}
