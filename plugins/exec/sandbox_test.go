package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/sandbox"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// A plugin killed at any moment of a sandboxed command's launch leaves no
// process behind, with no supervisor to kill its group: bwrap arms the
// parent-death signal of its sandbox's init only at the end of its setup,
// so without the group guard a kill in those milliseconds leaves the
// sandbox running for good.

// envLaunchHelper makes the test binary a plugin that launches one
// sandboxed command (see TestSandboxLaunchHelper); its value is the marker.
const envLaunchHelper = "IPA_EXEC_TEST_LAUNCH"

// discardHost is the host of the helper plugin: it takes and drops what
// the runtime reports (the processes are what is under test).
type discardHost struct{}

func (discardHost) AppendEvent(context.Context, pod.AppendEventRequest) (pod.AppendEventResponse, error) {
	return pod.AppendEventResponse{}, nil
}

func (discardHost) RequestPhase(context.Context, pod.PhaseRequest) (pod.PhaseResponse, error) {
	return pod.PhaseResponse{}, nil
}

func (discardHost) Output(context.Context, pod.OutputRequest) (pod.OutputResponse, error) {
	return pod.OutputResponse{}, nil
}

// TestSandboxLaunchHelper is the helper plugin, not a test: it says
// "launching", starts the sandboxed command and sleeps until killed.
func TestSandboxLaunchHelper(t *testing.T) {
	marker := os.Getenv(envLaunchHelper)
	if marker == "" {
		t.Skip("the helper plugin of TestSandboxLaunchKilled")
	}
	cfg, _ := json.Marshal(map[string]any{
		"command": []string{"sh", "-c", `sh -c 'sleep 1000 & sleep 1001; :' & sleep 1002; :`},
		"env":     map[string]string{envLaunchHelper: marker},
	})
	fmt.Println("launching")
	r := New()
	if _, err := r.Start(context.Background(), pod.StartRequest{TaskID: "t", WorkDir: os.Getenv("IPA_EXEC_TEST_DIR"), RuntimeConfig: cfg, Host: discardHost{}}); err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	fmt.Println("started")
	time.Sleep(time.Hour)
}

// markedPids lists the live processes whose environment carries marker.
func markedPids(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(b), envLaunchHelper+"="+marker+"\x00") {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

func TestSandboxLaunchKilled(t *testing.T) {
	bwrap, err := sandbox.Find(context.Background(), "")
	if err != nil {
		t.Skipf("needs a working bwrap: %v", err)
	}
	const runs = 30
	// Generous: how long a process may outlive its plugin on a loaded
	// machine; the kernel's part takes milliseconds.
	const outlive = 10 * time.Second
	during := 0
	for i := range runs {
		marker := fmt.Sprintf("%d-%d", os.Getpid(), i)
		cmd := osexec.Command(os.Args[0], "-test.run=^TestSandboxLaunchHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), envLaunchHelper+"="+marker, sandbox.EnvBwrap+"="+bwrap, "IPA_EXEC_TEST_DIR="+t.TempDir())
		// The plugin leads its group, as the supervisor starts it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		for lines.Scan() && lines.Text() != "launching" {
		}
		// Kills spread over the launch and the time after it: from at
		// once to 29 ms later (bwrap's setup takes a few ms).
		time.Sleep(time.Duration(i) * time.Millisecond)
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		var rest strings.Builder
		for lines.Scan() {
			rest.WriteString(lines.Text() + "\n")
		}
		_ = cmd.Wait()
		if !strings.Contains(rest.String(), "started") {
			during++
		}
		deadline := time.Now().Add(outlive)
		left := markedPids(marker)
		for len(left) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			left = markedPids(marker)
		}
		if len(left) > 0 {
			var b strings.Builder
			for _, p := range left {
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
				fmt.Fprintf(&b, "\n  %s", strings.TrimSpace(string(st)))
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			t.Errorf("plugin killed %d ms into the launch: its processes outlived it by %s:%s", i, outlive, b.String())
		}
	}
	t.Logf("%d of %d plugins killed before their sandboxed launch was done", during, runs)
}
