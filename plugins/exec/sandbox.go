package exec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/sandbox"
)

// sandboxArgv wraps argv in bwrap (see internal/sandbox): the workspace
// dir and sc.Writable writable, the paths the server named in
// sandbox.EnvHide hidden, the network only when sc.Network. A writable path
// that is missing or would uncover a hidden one is refused (EINVALID).
// gated adds the descriptors of a sandboxGate (3 and 4).
// readOnly are paths bound in read-only (see sandbox.Spec.ReadOnly).
func sandboxArgv(bwrap, dir string, sc SandboxConfig, argv []string, gated bool, readOnly ...string) ([]string, error) {
	hide := sandbox.DecodeHide(os.Getenv(sandbox.EnvHide))
	for i, w := range sc.Writable {
		if err := sandbox.CheckWritable(w, hide); err != nil {
			return nil, invalid("exec runtime config: sandbox.writable[%d] %v", i, err)
		}
		if _, err := os.Stat(w); err != nil {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "exec runtime config: sandbox.writable[%d] does not exist on this server.", i)
		}
	}
	args := sandbox.Args(sandbox.Spec{Workspace: dir, Writable: sc.Writable, ReadOnly: readOnly, Hide: hide, Network: sc.Network})
	if gated {
		args = append(args, "--info-fd", "3", "--block-fd", "4")
	}
	out := make([]string, 0, len(args)+len(argv)+2)
	out = append(append(append(append(out, bwrap), args...), "--"), argv...)
	return out, nil
}

// A sandboxGate sets a sandboxed command's limits. Set on bwrap itself,
// RLIMIT_NPROC would count every process of the server's user when bwrap
// creates its namespaces (and fail there once the user has that many); set
// inside the sandbox's user namespace, it counts the sandbox's own
// processes. So bwrap reports the pid of its child, already in the new
// namespaces (--info-fd), and waits (--block-fd) while the plugin sets the
// limits on that child, which passes them on to the command it starts.
type sandboxGate struct {
	infoR, infoW   *os.File
	blockR, blockW *os.File
	draining       bool // a goroutine reads infoR to its end and closes it
}

func newSandboxGate() (*sandboxGate, error) {
	g := &sandboxGate{}
	var err error
	if g.infoR, g.infoW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if g.blockR, g.blockW, err = os.Pipe(); err != nil {
		_ = g.infoR.Close()
		_ = g.infoW.Close()
		return nil, err
	}
	return g, nil
}

// files are bwrap's descriptors 3 (info) and 4 (block).
func (g *sandboxGate) files() []*os.File { return []*os.File{g.infoW, g.blockR} }

func (g *sandboxGate) close() {
	for _, f := range []*os.File{g.infoW, g.blockR, g.blockW} {
		_ = f.Close()
	}
	if !g.draining {
		_ = g.infoR.Close()
	}
}

var childPidRE = regexp.MustCompile(`"child-pid":\s*(\d+)\D`)

// gateWait bounds the wait for bwrap's report of its child.
const gateWait = 10 * time.Second

// apply reads the child's pid from bwrap, sets l on it and lets it go. Call
// once bwrap started; it closes the plugin's copies of bwrap's ends.
func (g *sandboxGate) apply(l Limits) error {
	_ = g.infoW.Close()
	_ = g.blockR.Close()
	_ = g.infoR.SetReadDeadline(time.Now().Add(gateWait))
	br := bufio.NewReader(g.infoR)
	var seen []byte
	pid := 0
	for pid == 0 {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The sandbox did not start in time.")
			}
			return ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The sandbox failed to start.")
		}
		seen = append(seen, b)
		if len(seen) > 4096 {
			return ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The sandbox reported no process.")
		}
		if m := childPidRE.FindSubmatch(seen); m != nil {
			pid, _ = strconv.Atoi(string(m[1]))
		}
	}
	// bwrap writes more after the pid and dies of SIGPIPE if nobody reads
	// it: the rest is read to its end (bwrap closes the descriptor once
	// written, or exits) and dropped.
	_ = g.infoR.SetReadDeadline(time.Time{})
	g.draining = true
	go func() {
		_, _ = io.Copy(io.Discard, br)
		_ = g.infoR.Close()
	}()
	if err := applyLimits(pid, l); err != nil {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Cannot apply the limits: %v.", err)
	}
	if _, err := g.blockW.Write([]byte{'x'}); err != nil {
		return ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "The sandbox failed to start: %v.", fmt.Sprint(err))
	}
	return nil
}
